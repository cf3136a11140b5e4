"""Stage 3 on museums with one catalogue photo per artwork (issue 18, observation 2).

With no second photo of an artwork there is no positive pair: stage 3 used to mine no triplet
and report ``loss 0.0000`` every epoch (P x K batches refused outright). Positives now come from
augmented views of the photo; these runs are tiny (stage 3 alone, 64-px images).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import muselens.training.run as run_module
from muselens.training.train_config import load_config
from muselens.training.run import MuseumModel, TrainingRun
from tests.conftest import write_image

STAGE3_ONLY = {
    "stages": [3], "train_blocks": 2, "eval_short_side": 64,
    "stage3": {"epochs": 2, "dim": 8, "k": 4, "short_side": 64, "triplets_per_step": 8, "views_per_photo": 2,
               "classes_per_batch": 4, "images_per_class": 2},
}


def _museum(root, photos: dict[str, int]):
    """Artworks with the given number of references each, one query per artwork."""
    seed = 100
    for iid, count in photos.items():
        for k in range(count):
            write_image(root / "references" / iid / f"r{k}.jpg", seed := seed + 1)
        write_image(root / "queries" / iid / "q0.png", seed := seed + 1)
    return root


def _config(**stage3):
    return load_config(None, {**STAGE3_ONLY, "stage3": {**STAGE3_ONLY["stage3"], **stage3}})


def _initial_top(config, instance_ids) -> dict[str, torch.Tensor]:
    """The classifier's weights as the run builds them, before any training."""
    torch.manual_seed(config.seed)
    model = MuseumModel.build(config, list(instance_ids), pretrained=False)
    return {k: v.clone() for k, v in model.classifier.state_dict().items()}


def _assert_learnt(run: TrainingRun, summary: dict, config) -> None:
    stage3 = [h for h in summary["history"] if h["stage"] == 3]
    assert len(stage3) == 2 and all(h["loss"] > 0 for h in stage3), stage3
    before = _initial_top(config, run.labels.instance_ids)
    after = run.model.classifier.state_dict()
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k].cpu())]
    assert changed, "stage 3 left the top blocks and the classifier untouched"


@pytest.mark.parametrize("loss", ["triplet-dot", "smooth-triplet"])
def test_one_photo_per_artwork_still_trains_stage3(tmp_path, capsys, loss):
    data = _museum(tmp_path / "museum", {f"a{i}": 1 for i in range(4)})
    config = _config(loss=loss)
    run = TrainingRun(data, tmp_path / "run", config, pretrained=False, progress=False)
    summary = run.run()
    _assert_learnt(run, summary, config)
    err = capsys.readouterr().err
    assert "stage 3: 4 of 4 artworks have one photo: positives are drawn from 2 augmented views of each photo" in err
    assert all("val_mp_at_1" in h for h in summary["history"])  # validated on the real queries


def test_a_museum_mixing_one_and_several_photos_gets_views_only_where_needed(tmp_path, capsys, monkeypatch):
    data = _museum(tmp_path / "museum", {"a0": 2, "a1": 1, "a2": 3, "a3": 1})
    seen = {}
    real = run_module.fit_descriptor

    def spy(net, top, cache, labels, *args, **kwargs):
        seen["labels"], seen["cached"] = labels.tolist(), len(cache)
        return real(net, top, cache, labels, *args, **kwargs)

    monkeypatch.setattr(run_module, "fit_descriptor", spy)
    config = _config()
    run = TrainingRun(data, tmp_path / "run", config, pretrained=False, progress=False)
    summary = run.run()
    # the 7 references in museum order, then 2 views of a1's photo and 2 of a3's
    assert seen["labels"] == [0, 0, 1, 2, 2, 2, 3, 1, 1, 3, 3] and seen["cached"] == 11
    assert "stage 3: 2 of 4 artworks have one photo: positives are drawn from 2 augmented views" \
        in capsys.readouterr().err
    _assert_learnt(run, summary, config)

    every = TrainingRun(data, tmp_path / "every", _config(views_for="all"), pretrained=False, progress=False)
    every.run()
    assert len(seen["labels"]) == 7 * 3
    assert "positives are also drawn from 2 augmented views of every photo" in capsys.readouterr().err


def test_without_views_a_one_photo_museum_is_refused_not_silently_untrained(tmp_path, capsys):
    data = _museum(tmp_path / "museum", {f"a{i}": 1 for i in range(3)})
    run = TrainingRun(data, tmp_path / "run", _config(views_per_photo=0), pretrained=False, progress=False)
    with pytest.raises(ValueError, match="stage 3 has no positive pair.*views_per_photo"):
        run.run()
    assert "3 of 3 artworks have one photo and stage3.views_per_photo is 0" in capsys.readouterr().err


class _Killed(Exception):
    pass


def test_a_run_killed_in_stage3_resumes_to_the_same_views_and_result(tmp_path, monkeypatch):
    """The views are drawn from (seed, photo, view) alone: a resumed process makes the same ones."""
    data = _museum(tmp_path / "museum", {"a0": 1, "a1": 1, "a2": 2})
    config = _config(epochs=3)
    reference = TrainingRun(data, tmp_path / "reference", config, pretrained=False, progress=False).run()

    real_save = TrainingRun._save

    def save_then_die(self, model, optimizer, stage_index, next_epoch, path=None):
        real_save(self, model, optimizer, stage_index, next_epoch, path)
        if optimizer is not None and next_epoch == 1:  # the checkpoint after stage 3's first epoch
            raise _Killed

    monkeypatch.setattr(TrainingRun, "_save", save_then_die)
    with pytest.raises(_Killed):
        TrainingRun(data, tmp_path / "killed", config, pretrained=False, progress=False).run()
    monkeypatch.setattr(TrainingRun, "_save", real_save)
    resumed = TrainingRun(data, tmp_path / "killed", None, pretrained=False, progress=False, resume=True).run()

    assert [(h["stage"], h["epoch"]) for h in resumed["history"]] == [(3, 0), (3, 1), (3, 2)]
    for key in ("loss", "val_mp_at_1", "val_map"):
        assert [h[key] for h in resumed["history"]] == \
            pytest.approx([h[key] for h in reference["history"]], rel=1e-5, abs=1e-7)
    a = torch.load(tmp_path / "reference" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)
    for part in ("classifier", "region_head"):
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=1e-5, atol=1e-6)


def test_stage3_settings_for_views_are_checked():
    from muselens.training.train_config import ConfigError

    with pytest.raises(ConfigError, match="views_per_photo must be >= 0"):
        _config(views_per_photo=-1)
    with pytest.raises(ConfigError, match="views_for must be one of"):
        _config(views_for="some")
    assert np.array_equal(run_module.view_sources(np.array([0, 1, 1, 2]), _config().stage3), [0, 3])

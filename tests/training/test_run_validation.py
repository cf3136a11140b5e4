"""Per-epoch validation on a large museum stays cheap (issue 18, observation 5).

Every epoch used to describe every reference and query; on a museum of a few hundred artworks
that took a good part of each epoch. Now a large museum is validated while validation stays
within a budget of the training time, and always after a stage's last epoch.
"""

from __future__ import annotations

import json
import time

import pytest
import torch

import muselens.training.run as run_module
from muselens.training.train_config import ConfigError, ValidationConfig, load_config
from muselens.training.curves import plot_curves
from muselens.training.run import TrainingRun, ValidationSchedule
from tests.conftest import write_image

SMALL_STAGES = {
    "stages": [1, 2], "train_blocks": 2, "eval_short_side": 64,
    "stage1": {"epochs": 3, "batch_size": 16, "image_size": 32},
    "stage2": {"epochs": 2, "images_per_step": 16, "short_sides": [48]},
    "stage3": {"short_side": 64, "k": 4},
}


def _history(*rows):
    return [{"stage": s, "seconds": t, **({"val_seconds": v} if v is not None else {})} for s, t, v in rows]


def test_a_small_museum_is_validated_after_every_epoch():
    schedule = ValidationSchedule(ValidationConfig(), images=200)
    assert schedule.every_epoch
    assert schedule.wants(_history((1, 1.0, 50.0)), 1, 1.0, last=False)


def test_a_large_museum_is_validated_within_the_budget_and_always_at_a_stage_end():
    schedule = ValidationSchedule(ValidationConfig(budget=0.1), images=201)
    assert not schedule.every_epoch
    assert schedule.wants([], 1, 10.0, last=False)  # nothing measured yet: this pass measures
    history = _history((1, 10.0, 4.0))
    assert not schedule.wants(history, 1, 10.0, last=False)  # 4 + 4 > 0.1 * 20
    assert schedule.wants(history, 1, 10.0, last=True)
    history += _history(*[(1, 10.0, None)] * 6)
    assert schedule.wants(history, 1, 10.0, last=False)  # 4 + 4 <= 0.1 * 80
    # a new stage keeps its own account, estimated from the last pass measured
    assert not schedule.wants(history, 2, 30.0, last=False)
    assert schedule.wants(history, 2, 80.0, last=False)
    never = ValidationSchedule(ValidationConfig(budget=0), images=10_000)
    assert not never.wants([], 1, 1e9, last=False) and never.wants([], 1, 1.0, last=True)


def test_validation_settings_are_checked():
    with pytest.raises(ConfigError, match="budget must be a number >= 0"):
        load_config(None, {"validation": {"budget": -0.5}})
    with pytest.raises(ConfigError, match="every_epoch_up_to must be an int >= 0"):
        load_config(None, {"validation": {"every_epoch_up_to": 1.5}})
    assert load_config(None, {"validation": {"budget": float("inf")}}).validation.budget == float("inf")


def test_curves_join_the_validated_epochs(tmp_path):
    history = [{"stage": 1, "epoch": e, "loss": 1.0 / (e + 1), "accuracy": 0.1 * e} for e in range(4)]
    for e in (0, 3):
        history[e].update(val_mp_at_1=0.2 + 0.1 * e, val_map=0.1 + 0.1 * e)
    history.append({"stage": 2, "epoch": 0, "loss": 0.5, "accuracy": 0.5})  # a stage never validated
    plot_curves(history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def large_museum(tmp_path):
    """101 artworks x 1 reference + 1 query: 202 validation images, over the default 200."""
    root = tmp_path / "large"
    for i in range(101):
        write_image(root / "references" / f"a{i:03d}" / "r.jpg", 2 * i + 1, size=(40, 48))
        write_image(root / "queries" / f"a{i:03d}" / "q.jpg", 2 * i + 2, size=(40, 48))
    return root


def test_a_large_museum_with_the_default_config_skips_validations_and_learns_the_same(large_museum, tmp_path,
                                                                                      monkeypatch, capsys):
    real = run_module.Validator.__call__

    def slow(self, model, stage):  # validation dearer than tiny training, as on a real museum
        time.sleep(0.5)
        return real(self, model, stage)

    monkeypatch.setattr(run_module.Validator, "__call__", slow)
    sparse = TrainingRun(large_museum, tmp_path / "sparse", load_config(None, SMALL_STAGES),
                         pretrained=False, progress=False).run()
    validated = [(h["stage"], h["epoch"]) for h in sparse["history"] if "val_mp_at_1" in h]
    assert len(validated) < len(sparse["history"])
    assert (1, 0) in validated and (1, 2) in validated and (2, 1) in validated  # first measures; last epochs
    for h in sparse["history"]:
        assert ("val_mp_at_1" in h) == ("val_map" in h) == ("val_seconds" in h)
    assert all(s["validation_seconds"] >= 0.5 for s in sparse["stages"].values())
    assert "validated after an epoch while that costs at most 10% of the stage's training time" \
        in capsys.readouterr().err
    on_disk = json.loads((tmp_path / "sparse" / "history.json").read_text())["history"]
    assert [("val_mp_at_1" in h) for h in on_disk] == [("val_mp_at_1" in h) for h in sparse["history"]]

    every = TrainingRun(large_museum, tmp_path / "every",
                        load_config(None, {**SMALL_STAGES, "validation": {"every_epoch_up_to": 1000}}),
                        pretrained=False, progress=False).run()
    assert all("val_mp_at_1" in h for h in every["history"])
    assert [h["loss"] for h in every["history"]] == [h["loss"] for h in sparse["history"]]
    a = torch.load(tmp_path / "sparse" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "every" / "model.pt", weights_only=True)
    assert all(torch.equal(a["classifier"][k], b["classifier"][k]) for k in a["classifier"])
    last = [h for h in every["history"] if (h["stage"], h["epoch"]) in {(1, 2), (2, 1)}]
    assert [h["val_map"] for h in last] == \
        [h["val_map"] for h in sparse["history"] if (h["stage"], h["epoch"]) in {(1, 2), (2, 1)}]

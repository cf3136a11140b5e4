"""A whole training run at a tiny size: stages, files, resume after SIGKILL."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from muselens.core.data.images import read_image
from muselens.training.checkpoint import load_checkpoint
from muselens.training.train_config import load_config
from muselens.training.run import STAGE3_START, TrainingRun, start_at_stage3

TINY = {
    "train_blocks": 2, "eval_short_side": 64,
    "stage1": {"epochs": 2, "batch_size": 4, "image_size": 64},
    "stage2": {"epochs": 1, "images_per_step": 2, "short_sides": [64, 48]},
    "stage3": {"epochs": 3, "dim": 8, "k": 4, "short_side": 64, "triplets_per_step": 4},
}




def _run(data, out, **kw):
    return TrainingRun(data, out, load_config(None, TINY), pretrained=False, progress=False, **kw).run()


def test_all_stages_write_what_the_run_promises(tiny_museum, tmp_path):
    out = tmp_path / "run"
    summary = _run(tiny_museum, out)
    assert [h["stage"] for h in summary["history"]] == [1, 1, 2, 3, 3, 3]
    assert all("val_mp_at_1" in h and 0 <= h["val_map"] <= 1 for h in summary["history"])
    assert set(summary["stages"]) == {"1", "2", "3"}
    assert all(s["seconds"] > 0 and s["peak_rss_mib"] > 0 for s in summary["stages"].values())
    for name in ("model.pt", "model.json", "history.json", "curves.png", "config.yaml", "checkpoint.pt"):
        assert (out / name).exists(), name
    assert yaml.safe_load((out / "config.yaml").read_text())["stage3"]["dim"] == 8
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["region_head"]["projection.weight"].shape[0] == 8
    assert json.loads((out / "model.json").read_text())["instance_ids"] == ["a0", "a1", "a2"]


def test_model_pt_is_written_last_so_it_means_the_run_is_finished(tiny_museum, tmp_path, monkeypatch):
    """A SIGKILL between the final files once left model.pt without history.json: a run that
    looked finished. Each file is now written whole and model.pt last; killed before it, the run
    resumes from its finished checkpoint and writes them all."""
    import muselens.training.run as run_module

    written, real = [], run_module.write_whole

    def recording(path, write):
        real(path, write)
        written.append(path.name)

    monkeypatch.setattr(run_module, "write_whole", recording)
    out = tmp_path / "run"
    reference = _run(tiny_museum, out)
    assert written == ["model.json", "history.json", "curves.png", "model.pt"]
    for name in written:  # killed before model.pt: as if the last files had never been written
        (out / name).unlink()
    resumed = TrainingRun(tiny_museum, out, None, pretrained=False, progress=False, resume=True).run()
    assert resumed["history"] == reference["history"]
    assert all((out / name).exists() for name in written)


def test_an_existing_run_is_not_overwritten(tiny_museum, tmp_path):
    out = tmp_path / "run"
    _run(tiny_museum, out)
    with pytest.raises(FileExistsError, match="--resume"):
        _run(tiny_museum, out)


def test_a_corrupt_reference_is_skipped_not_fatal(tiny_museum, tmp_path):
    (tiny_museum / "references" / "a0" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    summary = _run(tiny_museum, tmp_path / "run")
    assert [s["path"].endswith("broken.jpg") for s in summary["skipped"]] == [True]


def _assert_same_run(reference: dict, resumed: dict, reference_dir, resumed_dir) -> None:
    """Same epochs, losses, validation metrics and final weights (within float noise)."""
    assert [(r["stage"], r["epoch"]) for r in resumed["history"]] == \
        [(r["stage"], r["epoch"]) for r in reference["history"]]
    for key in ("loss", "val_mp_at_1", "val_map"):
        assert [r[key] for r in resumed["history"]] == \
            pytest.approx([r[key] for r in reference["history"]], rel=1e-4, abs=1e-6)
    a = torch.load(reference_dir / "model.pt", weights_only=True)
    b = torch.load(resumed_dir / "model.pt", weights_only=True)
    for part in ("classifier", "region_head"):
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=1e-4, atol=1e-5)


CHILD = """
import sys, torch
torch.set_num_threads(1)
from muselens.training.train_config import load_config
from muselens.training.run import STAGE3_START, TrainingRun, start_at_stage3
import json
TrainingRun(sys.argv[1], sys.argv[2], load_config(None, json.loads(sys.argv[3])),
            pretrained=False, progress=False).run()
"""


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_same_result(tiny_museum, tmp_path):
    reference = _run(tiny_museum, tmp_path / "reference")

    out = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_museum), str(out), json.dumps(TINY)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        # Kill it as soon as stage 3 has begun: mid-run, after several checkpoints.
        while time.monotonic() < deadline and child.poll() is None:
            if (out / "checkpoint.pt").exists():
                try:
                    if load_checkpoint(out / "checkpoint.pt")["stage_index"] >= 2:
                        break
                except Exception:  # being replaced right now; look again
                    pass
            time.sleep(0.05)
        assert child.poll() is None, "the child finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert not (out / "model.pt").exists()

    resumed = TrainingRun(tiny_museum, out, None, pretrained=False, progress=False, resume=True).run()
    _assert_same_run(reference, resumed, tmp_path / "reference", out)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_random_moment_then_resume_reaches_the_same_result(tiny_museum, tmp_path, seed):
    """Killed at a seeded random instant of the run (mid-epoch, mid-checkpoint-write, between
    stages: wherever it lands), resumed, the same history and weights as an uninterrupted run."""
    import random

    start = time.monotonic()
    reference = _run(tiny_museum, tmp_path / "reference")
    duration = time.monotonic() - start
    delay = random.Random(seed).uniform(0.15, 0.9) * duration

    out = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_museum), str(out), json.dumps(TINY)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300  # start-up (imports) is not part of the reference's duration
        while not out.exists() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        time.sleep(delay)
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()

    if (out / "model.pt").exists():  # the kill came after the run had finished: nothing to resume
        resumed = json.loads((out / "history.json").read_text())
    else:  # a killed run resumes from its checkpoint, or starts over if it died before the first one
        config = None if (out / "checkpoint.pt").exists() else load_config(None, TINY)
        resumed = TrainingRun(tiny_museum, out, config, pretrained=False, progress=False, resume=True).run()
    _assert_same_run(reference, resumed, tmp_path / "reference", out)


def test_a_stage3_variant_starts_from_another_runs_stages_1_2_and_equals_training_it_whole(tiny_museum, tmp_path):
    _run(tiny_museum, tmp_path / "proposed")
    assert (tmp_path / "proposed" / STAGE3_START).exists()
    other = load_config(None, {**TINY, "stage3": {**TINY["stage3"], "loss": "batch-hard-hinge"}})
    whole = TrainingRun(tiny_museum, tmp_path / "whole", other, pretrained=False, progress=False).run()

    start_at_stage3(tmp_path / "proposed", tmp_path / "shared", other, data=tiny_museum, pretrained=False)
    shared = TrainingRun(tiny_museum, tmp_path / "shared", None, pretrained=False, progress=False, resume=True).run()
    _assert_same_run(whole, shared, tmp_path / "whole", tmp_path / "shared")
    assert shared["stages"]["1"]["shared_from"] == str(tmp_path / "proposed") and "shared_from" not in shared["stages"]["3"]
    assert yaml.safe_load((tmp_path / "shared" / "config.yaml").read_text())["stage3"]["loss"] == "batch-hard-hinge"

    with pytest.raises(FileExistsError):
        start_at_stage3(tmp_path / "proposed", tmp_path / "shared", other, data=tiny_museum, pretrained=False)
    longer = load_config(None, {**TINY, "stage1": {**TINY["stage1"], "epochs": 3}})
    for config, kw, names in ((longer, {"pretrained": False}, "stage1"),
                              (other, {"pretrained": True}, "initial weights"),
                              (other, {"pretrained": False, "data": tmp_path}, "museum")):
        with pytest.raises(ValueError, match=f"cannot give its stages 1-2 to this run: .*{names}"):
            start_at_stage3(tmp_path / "proposed", tmp_path / "x", config, **{"data": tiny_museum, **kw})
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    torch.save({"format": "something-else"}, foreign / STAGE3_START)
    with pytest.raises(ValueError, match="not a muselens-train-checkpoint/1 checkpoint"):
        start_at_stage3(foreign, tmp_path / "y", other, data=tiny_museum, pretrained=False)


def test_a_finished_run_is_evaluated_as_ft_and_proposed(tiny_museum, tmp_path):
    from muselens.core.data.museum_dataset import MuseumDataset
    from muselens.training.evaluation import build_method, evaluate_method
    from muselens.training.trained import TrainedModel

    out = tmp_path / "run"
    _run(tiny_museum, out)
    dataset = MuseumDataset.load(tiny_museum)
    for name, dim in (("ft", None), ("proposed", 8)):
        method = build_method(name, run=str(out))
        result = evaluate_method(dataset, method, progress=False)
        assert result.counts["queries"] == 3 and 0 <= result.retrieval["mp_at_1"] <= 1
        if dim:
            assert result.info["dim"] == dim
    d = TrainedModel(out).describe([read_image(dataset.queries[0].path)])
    assert d.shape == (1, 8) and abs(float((d ** 2).sum()) - 1) < 1e-5


def test_trained_methods_need_a_run(tiny_museum, capsys):
    from muselens.cli import main as cli

    assert cli(["evaluate", str(tiny_museum), "--method", "proposed", "--no-progress"]) == 2
    assert "--run" in capsys.readouterr().err


def test_train_command_reports_bad_settings_and_data(tiny_museum, tmp_path, capsys):
    from muselens.cli import main as cli

    assert cli(["train", str(tiny_museum), "--out", str(tmp_path / "r"), "--set", "stage1.epoch=2",
                "--no-progress"]) == 2
    assert "unknown key(s) ['epoch'] in stage1" in capsys.readouterr().err
    assert cli(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_resume_refuses_a_foreign_checkpoint(tiny_museum, tmp_path):
    from muselens.training.checkpoint import save_checkpoint

    out = tmp_path / "run"
    save_checkpoint(out / "checkpoint.pt", {"format": "something else", "epoch": 1})
    with pytest.raises(ValueError, match="not a muselens-train-checkpoint/1 checkpoint"):
        TrainingRun(tiny_museum, out, None, pretrained=False, progress=False, resume=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_cuda_without_a_cuda_device_is_refused(tiny_museum, tmp_path):
    with pytest.raises(ValueError, match="no CUDA device"):
        TrainingRun(tiny_museum, tmp_path / "r", load_config(None, TINY), device="cuda", pretrained=False)


def test_an_unfinished_run_cannot_be_loaded_for_inference(tmp_path):
    from muselens.training.checkpoint import CheckpointError
    from muselens.training.trained import TrainedModel

    (tmp_path / "config.yaml").write_text("{}\n")
    with pytest.raises(CheckpointError, match="model.pt is missing"):
        TrainedModel(tmp_path)


def test_artworks_without_a_query_are_not_said_to_be_unlearnable(tiny_museum, tmp_path, caplog):
    """Issue 18, observation 4: queries covering only some artworks made the run warn that the
    others "have no readable photo and cannot be learnt", though all their references were read."""
    for iid in ("a1", "a2"):
        shutil.rmtree(tiny_museum / "queries" / iid)
    run = TrainingRun(tiny_museum, tmp_path / "run", load_config(None, TINY), pretrained=False, progress=False)
    with caplog.at_level(logging.INFO, logger="muselens.training"):
        run._load_data()
    messages = [r.getMessage() for r in caplog.records]
    assert not any("cannot be learnt" in m for m in messages), messages
    assert "2 artwork(s) have no readable query photo: they are not validated" in messages
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)

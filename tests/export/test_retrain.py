"""``muselens retrain``: train, evaluate, export and validate through the runtime, at tiny size."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from muselens.export import retrain, retrain_command
from tests.conftest import write_image
from tests.tiny_model import TINY, make_museum


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    retrain_command.add_arguments(parser)
    return parser.parse_args(argv)


def test_retrain_end_to_end(tmp_path, capsys):
    museum = make_museum(tmp_path / "museum")
    config = tmp_path / "museum.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "bundles" / "tiny"
    args = _parse([str(museum), "--out", str(out), "--config", str(config), "--set", "seed=3", "--precision", "fp32",
                   "--no-pretrained", "--no-progress", "--latency-runs", "0", "--bundle-version", "9"])
    assert retrain_command.main(args) == 0
    printed = capsys.readouterr()
    assert "matches the manifest" in printed.out and "references re-described" in printed.out
    assert "training" in printed.err and "validating the bundle through the runtime" in printed.err
    run_dir = tmp_path / "bundles" / "tiny.run"
    assert (run_dir / "model.pt").exists() and yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == 3
    summary = json.loads((tmp_path / "bundles" / "tiny.retrain.json").read_text())
    assert summary["validation_metrics"]["stage"] == 3 and 0 <= summary["validation_metrics"]["val_mp_at_1"] <= 1
    check = summary["runtime_validation"]
    assert check["passed"] and abs(check["mp_at_1"]["runtime"] - summary["export_metrics"]["fp32"]["mp_at_1"]) <= 1e-6
    assert [r["gallery_row"] for r in check["references"]] == [0, 5] and min(r["cosine"] for r in check["references"]) >= 0.9999
    threshold = summary["threshold"]
    assert threshold["calibrated"] and [s["source"] for s in threshold["sources"]] == [
        "distractors", "impostor-views", "generated-non-artwork"]
    assert re.search(rf"^threshold  {threshold['value']:.4f} at FAR 0.01, the highest of: distractors ", printed.out,
                     re.M)

    # the run is there now: a second retrain without --resume is refused before anything is written
    assert retrain_command.main(_parse([str(museum), "--out", str(tmp_path / "other"), "--run-dir", str(run_dir),
                                "--precision", "fp32", "--no-pretrained"])) == 2
    assert "pass --resume" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_bad_inputs_exit_2(tmp_path, capsys):
    assert retrain_command.main(_parse([str(tmp_path / "none"), "--out", str(tmp_path / "b"), "--no-pretrained"])) == 2
    assert "is not a directory" in capsys.readouterr().err
    museum = make_museum(tmp_path / "museum")
    assert retrain_command.main(_parse([str(museum), "--out", str(tmp_path / "b"), "--set", "stage1.nope=1",
                                "--no-pretrained"])) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_validation_passes_on_the_exported_bundle_without_torch(tiny_bundle, export_museum):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from muselens.export.retrain import validate_bundle\n"
            f"report = validate_bundle({str(tiny_bundle)!r}, {str(export_museum)!r}, progress=lambda m: None)\n"
            "assert report['passed'], report\n"
            "assert not [k for k, v in sys.modules.items() if v is not None and k.split('.')[0] == 'torch']\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_validation_refuses_a_bundle_that_does_not_reproduce(tiny_bundle, export_museum, tmp_path):
    museum = tmp_path / "museum"
    shutil.copytree(export_museum, museum)
    write_image(museum / "references" / "a0" / "r0.jpg", 999)  # another picture where gallery row 0 came from
    with pytest.raises(retrain.ValidationError, match=r"references/a0/r0.jpg described again has cosine") as caught:
        retrain.validate_bundle(tiny_bundle, museum, progress=lambda m: None)
    assert caught.value.report["passed"] is False
    (museum / "references" / "a2" / "r1.jpg").unlink()
    with pytest.raises(ValueError, match="5 readable references but the gallery holds 6"):
        retrain.validate_bundle(tiny_bundle, museum, progress=lambda m: None)


def test_validation_metrics_take_the_last_row_of_the_last_stage():
    history = [{"stage": 1, "val_mp_at_1": 0.1, "val_map": 0.2}, {"stage": 3, "val_mp_at_1": 0.5, "val_map": 0.6},
               {"stage": 3, "val_mp_at_1": 0.7, "val_map": 0.8, "loss": 1.0}]
    assert retrain.validation_metrics(history) == {"val_mp_at_1": 0.7, "val_map": 0.8, "stage": 3}
    assert retrain.validation_metrics([{"stage": 3, "loss": 1.0}]) == {}
    with pytest.raises(ValueError, match="no history"):
        retrain.validation_metrics([])


def test_a_drifting_variant_is_left_out_and_the_summary_says_why(run_dir, export_museum, tmp_path, capsys,
                                                                  monkeypatch, scramble):
    """Issue 18: three minutes of training must not end without a bundle because of one variant."""
    scramble("fp16")
    trained = {"history": [{"stage": 3, "val_mp_at_1": 0.05, "val_map": 0.1}], "stages": [1, 2, 3], "device": "cpu"}
    monkeypatch.setattr(retrain, "_train", lambda *args, **options: trained)  # the session's tiny run stands in
    out = tmp_path / "tiny"
    args = _parse([str(export_museum), "--out", str(out), "--run-dir", str(run_dir), "--precision", "fp32,fp16",
                   "--latency-runs", "0"])
    assert retrain_command.main(args) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^refused    fp16: 5th-percentile descriptor cosine to fp32 ", printed, re.M)
    summary = json.loads(retrain.summary_path(out).read_text())
    assert list(summary["refused_variants"]) == ["fp16"] and "cosine" in summary["refused_variants"]["fp16"]
    assert sorted(summary["export_metrics"]) == ["fp32"] and summary["runtime_validation"]["passed"]

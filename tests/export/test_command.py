"""``muselens export``: flags, the printed table, exit codes."""

from __future__ import annotations

import argparse

import pytest

import muselens.export.bundle as bundle_module
from muselens.export import command
from muselens.runtime.bundle import load_bundle


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_export_writes_the_bundle_and_prints_the_table(run_dir, tmp_path, capsys):
    out = tmp_path / "museum-bundle"
    args = _parse([str(run_dir), "--out", str(out), "--precision", "fp32", "--archive",
                   "--latency-runs", "1", "--bundle-version", "7", "--target-far", "0.5"])
    assert command.main(args) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert lines[0].split() == ["variant", "mP@1", "mAP", "drop", "MB", "ms", "p50", "ms", "p95"]
    assert lines[2].split()[0] == "fp32" and len(lines[2].split()) == 7
    assert "at FAR 0.5 on 2 distractors" in printed.out
    assert "parity with PyTorch" in printed.err and "writing bundle" in printed.err
    bundle = load_bundle(tmp_path / "museum-bundle.tar.gz")
    assert bundle.bundle_version == "7" and sorted(bundle.manifest.models) == ["fp32"]
    assert bundle.manifest.threshold.target_far == 0.5


def test_defaults(run_dir, tmp_path):
    args = _parse([str(run_dir), "--out", str(tmp_path / "b")])
    assert args.precision == ("fp32", "fp16", "int8")
    assert (args.max_drop, args.force, args.target_far, args.archive, args.data) == (1.0, False, 0.01, False, None)


def test_unknown_precisions_are_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        _parse(["run", "--out", "b", "--precision", "fp32,fp8"])
    assert exit_info.value.code == 2


def test_bad_inputs_exit_2(tmp_path, capsys):
    assert command.main(_parse([str(tmp_path), "--out", str(tmp_path / "b")])) == 2
    assert "not a finished training run" in capsys.readouterr().err
    assert command.main(_parse([str(tmp_path), "--out", str(tmp_path / "b"), "--precision", "fp16"])) == 2
    assert "must include fp32" in capsys.readouterr().err


def test_drift_exits_1(run_dir, tmp_path, capsys, monkeypatch):
    real = bundle_module.retrieval_metrics
    calls = []

    def degrading(*args):
        metrics = real(*args)
        calls.append(1)
        metrics["mp_at_1"] = 1.0 if len(calls) == 1 else 0.5
        return metrics

    monkeypatch.setattr(bundle_module, "retrieval_metrics", degrading)
    args = _parse([str(run_dir), "--out", str(tmp_path / "b"), "--precision", "fp32,fp16", "--max-drop", "10",
                   "--latency-runs", "0"])
    assert command.main(args) == 1
    assert "fp16" in capsys.readouterr().err and not (tmp_path / "b").exists()

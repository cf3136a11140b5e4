"""``muselens export``: flags, the printed table, exit codes."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from muselens.export import export_command as command
from muselens.runtime.bundle import load_bundle


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_export_writes_the_bundle_and_prints_the_table(run_dir, tmp_path, capsys):
    out = tmp_path / "museum-bundle"
    args = _parse([str(run_dir), "--out", str(out), "--precision", "fp32", "--archive",
                   "--latency-runs", "1", "--bundle-version", "7", "--target-far", "0.5",
                   "--non-artwork-photos", "8", "--impostor-views", "2"])
    assert command.main(args) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert lines[0].split() == ["variant", "mP@1", "mAP", "drop", "MB", "ms", "p50", "ms", "p95"]
    assert lines[2].split()[0] == "fp32" and len(lines[2].split()) == 7
    assert re.search(r"^threshold -?\d\.\d{4} at FAR 0\.5, the highest of: distractors -?\d\.\d{4} \(n=2\), "
                     r"impostor-views -?\d\.\d{4} \(n=12\)"
                     r"( \[capped at the equal error with genuine views; at the target -?\d\.\d{4}\])?, "
                     r"generated-non-artwork -?\d\.\d{4} \(n=8\)$",
                     printed.out, re.M), printed.out
    assert "parity with PyTorch" in printed.err and "writing bundle" in printed.err
    bundle = load_bundle(tmp_path / "museum-bundle.tar.gz")
    assert bundle.bundle_version == "7" and sorted(bundle.manifest.models) == ["fp32"]
    assert bundle.manifest.threshold.target_far == 0.5


def test_defaults(run_dir, tmp_path):
    args = _parse([str(run_dir), "--out", str(tmp_path / "b")])
    assert args.precision == ("fp32", "fp16", "int8")
    assert (args.max_drop, args.force, args.target_far, args.archive, args.data) == (1.0, False, 0.01, False, None)
    assert (args.min_cosine, args.min_top1_agreement) == (0.95, 0.8)
    assert (args.non_artwork_photos, args.impostor_views) == (48, 1)


def test_unknown_precisions_are_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        _parse(["run", "--out", "b", "--precision", "fp32,fp8"])
    assert exit_info.value.code == 2


def test_bad_inputs_exit_2(tmp_path, capsys):
    assert command.main(_parse([str(tmp_path), "--out", str(tmp_path / "b")])) == 2
    assert "not a finished training run" in capsys.readouterr().err
    assert command.main(_parse([str(tmp_path), "--out", str(tmp_path / "b"), "--precision", "fp16"])) == 2
    assert "must include fp32" in capsys.readouterr().err


def test_a_refused_variant_is_printed_with_its_reason_and_the_bundle_written(run_dir, tmp_path, capsys, scramble):
    scramble("fp16")
    results = tmp_path / "results.json"
    args = _parse([str(run_dir), "--out", str(tmp_path / "b"), "--precision", "fp32,fp16", "--latency-runs", "0",
                   "--results-json", str(results)])
    assert command.main(args) == 0
    printed = capsys.readouterr()
    assert re.search(r"^refused fp16: 5th-percentile descriptor cosine to fp32 \S+ is below 0\.95", printed.out, re.M)
    assert "warning: fp16 left out of the bundle" in printed.err
    lines = printed.out.splitlines()
    assert lines[2].split()[0] == "fp32" and lines[3].startswith("refused fp16: ")  # the table holds fp32 only
    assert sorted(load_bundle(tmp_path / "b").manifest.models) == ["fp32"]
    assert list(json.loads(results.read_text())["refused"]) == ["fp16"]


def test_the_drift_bounds_are_flags(run_dir, tmp_path, capsys, scramble):
    scramble("fp16")
    args = _parse([str(run_dir), "--out", str(tmp_path / "b"), "--precision", "fp32,fp16", "--latency-runs", "0",
                   "--min-cosine", "-1", "--min-top1-agreement", "0", "--max-drop", "100"])
    assert command.main(args) == 0
    assert "refused" not in capsys.readouterr().out
    assert sorted(load_bundle(tmp_path / "b").manifest.models) == ["fp16", "fp32"]
    assert command.main(_parse([str(run_dir), "--out", str(tmp_path / "c"), "--min-cosine", "1.5"])) == 2
    assert "min_cosine must lie in [-1, 1]" in capsys.readouterr().err


def test_a_drifting_default_variant_exits_1(run_dir, tmp_path, capsys, scramble):
    scramble("fp16")
    args = _parse([str(run_dir), "--out", str(tmp_path / "b"), "--precision", "fp32,fp16", "--latency-runs", "0",
                   "--default-variant", "fp16"])
    assert command.main(args) == 1
    assert "fp16, the default variant, drifts too far" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_help_documents_the_drift_bounds(capsys):
    with pytest.raises(SystemExit):
        _parse(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--min-cosine", "--min-top1-agreement", "--max-drop", "--force"):
        assert flag in text
    assert "left out of the bundle" in text and "sign test" in text

"""bench reconnect at tiny size: one restart, measured and rendered."""

from __future__ import annotations

import json

import pytest

from muselens.benchmarks.bench_command import load
from muselens.cli import main as cli


@pytest.mark.slow
def test_one_restart_is_measured(tiny_bundle, export_museum, tmp_path):
    out = tmp_path / "reconnect"
    query = export_museum / "queries" / "a0" / "q0.png"
    assert cli(["bench", "reconnect", str(tiny_bundle), "--out", str(out), "--down", "0.5", "--repeats", "1",
                "--image", str(query)]) == 0
    data = json.loads((out / "bench.json").read_text())
    run = data["runs"][0]
    assert run["down_s"] == 0.5 and run["reconnects"] >= 1
    assert 0 < run["resume_after_ready_ms"] < run["outage_ms"]
    assert run["outage_ms"] >= 500  # it was down at least that long
    text = load("reconnect").markdown(out, data)
    assert "| 0.5 | 1 |" in text and "1 s bound" in text


def test_bad_arguments(tiny_bundle, tmp_path, capsys):
    assert cli(["bench", "reconnect", str(tiny_bundle), "--out", str(tmp_path), "--down", "x"]) == 2
    assert cli(["bench", "reconnect", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err

"""The README's main command, end to end at a tiny size."""

from __future__ import annotations

import json

from muselens.cli import main as cli

TINY = ["--instances", "3", "--references", "2", "--queries", "1", "--distractors", "2",
        "--size", "128", "--eval-size", "96", "--no-progress"]


def test_demo_builds_checks_evaluates_and_reuses(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli(["demo", "--out", str(out), *TINY]) == 0
    results = json.loads((out / "evaluation" / "results.json").read_text())
    assert results["results"][0]["counts"]["queries"] == 3
    assert (out / "evaluation" / "evaluation.png").exists()
    first = sorted(p.stat().st_mtime_ns for p in (out / "museum").rglob("*.jpg"))

    assert cli(["demo", "--out", str(out), *TINY]) == 0
    assert "reused" in capsys.readouterr().err
    assert sorted(p.stat().st_mtime_ns for p in (out / "museum").rglob("*.jpg")) == first

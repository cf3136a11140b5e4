"""The README's main command, end to end at a tiny size: museum, training, evaluation, export,
walk, serving over gRPC, streaming, report -- and a re-run that reuses everything."""

from __future__ import annotations

import json
import re

import pytest

from muselens.cli import main as cli

TINY = ["--preset", "tiny", "--no-pretrained", "--no-progress"]


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_reuses_it(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli(["demo", "--out", str(out), *TINY]) == 0
    captured = capsys.readouterr()
    results = json.loads((out / "evaluation" / "results.json").read_text())
    assert [r["name"] for r in results["results"]] == ["sift", "im-gem", "ft", "proposed"]
    assert (out / "bundle" / "manifest.json").exists() and (out / "run" / "model.pt").exists()
    stream = json.loads((out / "stream.json").read_text())
    walk = json.loads((out / "walk" / "walk.json").read_text())
    assert stream["summary"]["sent"] == len(walk["frames"]) and stream["summary"]["answered"] >= 1
    summary = stream["summary"]  # verification ran beside the stream and is reported, whatever it found
    assert summary["verifications"] == len(stream["verifications"]) and summary["verified_frames"] <= summary["verifications"]
    assert {"outline", "age_ms", "truth"} <= set(next(iter(stream["verifications"].values()), {"outline": 0, "age_ms": 0, "truth": 0}))
    assert re.search(r"frame 0000\d\d  shown: ", captured.out)  # live lines
    html = (out / "report.html").read_text()
    assert "verified geometrically in the background" in html
    for heading in ("The museum&#x27;s results", "Training curves", "Streaming the walk", "Frames of the walk"):
        assert heading in html
    assert "data:image/png;base64," in html and "data:image/jpeg;base64," in html
    assert not re.search(r"(src|href)=\"https?://", html)  # opens without a network
    first = {p: p.stat().st_mtime_ns for p in (out / "museum").rglob("*.jpg")}
    model = (out / "run" / "model.pt").stat().st_mtime_ns

    assert cli(["demo", "--out", str(out), *TINY]) == 0
    err = capsys.readouterr().err
    assert err.count("reused") >= 5
    assert {p: p.stat().st_mtime_ns for p in (out / "museum").rglob("*.jpg")} == first
    assert (out / "run" / "model.pt").stat().st_mtime_ns == model
    assert "reused from an earlier run: museum, training, evaluation, bundle, walk" in (out / "report.html").read_text()

from __future__ import annotations

import json

from muselens.benchmarks.make_museum_speed import main


def test_speed_benchmark_writes_measured_json(tmp_path):
    out = tmp_path / "speed.json"
    assert main(["--out", str(out), "--instances", "2", "--references", "1", "--queries", "1",
                 "--distractors", "1", "--size", "96", "--workers", "1", "--repeats", "1"]) == 0
    result = json.loads(out.read_text())
    text = json.dumps(result)
    assert "images_per_s" in text or "images/s" in text

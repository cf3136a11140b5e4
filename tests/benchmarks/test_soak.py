"""``muselens bench soak``: the series it samples and the steadiness it reports."""

from __future__ import annotations

import json

import pytest

from muselens.benchmarks import soak
from muselens.cli import main as cli


def test_rss_slope_is_mib_per_minute():
    times = [0.0, 30.0, 60.0, 90.0]
    assert soak.rss_slope_mib_per_min(times, [100.0, 101.0, 102.0, 103.0]) == pytest.approx(2.0)
    assert soak.rss_slope_mib_per_min(times, [100.0] * 4) == pytest.approx(0.0)
    assert soak.rss_slope_mib_per_min([5.0], [100.0]) is None


def test_summary_takes_the_second_half_and_the_p99_drift():
    series = [{"t": t, "throughput": 10.0, "p99_ms": p99, "rss_mb": rss}
              for t, p99, rss in [(10, 50.0, 500.0), (20, None, 520.0), (30, 60.0, 530.0), (40, 75.0, 530.0)]]
    summary = soak.summarise(series)
    # t >= 20 s only: 520, 530, 530 MiB at 1/3, 1/2, 2/3 min -> least squares 30 MiB/min (500 is ignored)
    assert summary["rss_slope_mib_per_min_second_half"] == pytest.approx(30.0)
    assert summary["p99_ratio_last_to_first"] == pytest.approx(1.5)
    assert summary["rss_max_mb"] == 530.0


def test_frames_come_from_a_folder_or_are_synthetic(tmp_path):
    frames = soak.load_frames(None, seed=1, count=3)
    assert len(frames) == 3 and all(f[:2] == b"\xff\xd8" for f in frames)
    (tmp_path / "a.jpg").write_bytes(frames[0])
    assert soak.load_frames(tmp_path) == [frames[0]]
    with pytest.raises(ValueError, match="no .jpg"):
        soak.load_frames(tmp_path / "a.jpg.d")


@pytest.mark.slow
def test_bench_soak_for_a_few_seconds(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "soak"
    code = cli(["bench", "soak", str(tiny_bundle), "--out", str(out), "--streams", "2", "--minutes", "0.1",
                "--fps", "10", "--interval", "1.5", "--threads", "1"])
    data = json.loads((out / "bench.json").read_text())
    assert code == 0 and data["server_alive"] and data["stream_errors"] == []
    assert len(data["series"]) >= 3 and data["answers"] > 20 and data["frame_errors"] == 0
    assert all(s["rss_mb"] > 0 and s["throughput"] >= 0 for s in data["series"])
    assert "p99_ratio_last_to_first" in data["summary"]
    assert (out / "soak.png").stat().st_size > 1000
    assert "| RSS slope, second half (MiB/min) |" in capsys.readouterr().out
    text = soak.markdown(out, data)
    assert text.startswith("## soak") and "results/soak/soak.png" in text


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert cli(["bench", "soak", str(tmp_path), "--out", str(tmp_path / "o"), "--streams", "0", "--minutes", "1"]) == 2
    assert "--streams" in capsys.readouterr().err

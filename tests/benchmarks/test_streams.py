from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import pytest

from muselens.benchmarks import streams, streams_report, utilisation
from muselens.cli import main as cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def streams_run(tiny_bundle, tmp_path_factory):
    """`muselens serve` in a subprocess, 1 then 2 cameras at 500 fps: far past what it can answer."""
    out = tmp_path_factory.mktemp("bench") / "tiny-streams"
    argv = ["bench", "streams", str(tiny_bundle), "--out", str(out), "--streams", "1,2", "--fps", "500",
            "--duration", "0.6", "--warmup", "0.2", "--threads", "1", "--frames", "2", "--baseline"]
    assert cli(argv) == 0
    return out, argv, json.loads((out / "bench.json").read_text())


def test_cameras_outpacing_the_server_get_latest_frame_wins_drops(streams_run):
    _, argv, data = streams_run
    assert data["benchmark"] == "streams" and data["command"] == "muselens " + " ".join(argv)
    server = data["server"]
    assert server["started_here"] and server["command"].startswith("muselens serve ")
    assert server["bundle"]["name"] == "tiny" and server["bundle"]["bundle_version"] == "1.0.0"
    assert server["shutdown"] == {"stopped": "SIGTERM", "exit_code": 0}
    assert [r["streams"] for r in data["runs"]] == [1, 2]
    for run in data["runs"]:
        assert len(run["per_stream"]) == run["streams"]
        assert run["errors"] == 0 and run["failures"] == [] and run["hung_streams"] == []
        for camera in run["per_stream"]:
            assert "failure" not in camera
            # every frame sent is answered or dropped by the server, none lost
            assert camera["sent"] == camera["answered"] + camera["server_dropped"]
            assert camera["answered_measured"] > 0 and camera["achieved_fps"] > 0
        assert run["server_dropped_total"] > 0 and run["drop_rate"] > 0
        assert run["unanswered_measured"] == run["sent_measured"] - run["answered_measured"] > 0
        assert run["achieved_fps_total"] < run["offered_fps_total"]
        assert run["latency_ms"]["count"] == run["answered_measured"] and run["latency_ms"]["p50"] > 0
        stages = run["stages_ms"]
        assert set(stages) == {"queue", "decode", "preprocess", "track", "inference", "match", "verify", "total"}
        assert stages["inference"]["count"] == run["answered_measured"] and stages["inference"]["p50"] > 0
        assert run["server_cpu"]["percent_of_one_core"] > 0
        if shutil.which("nvidia-smi") is None:
            assert run["gpu"] == {"unavailable": "nvidia-smi not found on this machine"}
    assert data["bare"]["count"] == 30 and data["bare"]["short_side"] == 64 and data["bare"]["p50"] > 0
    assert data["bare"]["variant"] == "fp32" and server["bundle"]["variant"] == "fp32"
    assert "variant fp32" in server["bundle"]["variant_choice"]
    baseline = data["baseline"]
    assert ("--pipeline off --reduced-decode off --verify-share 1 --regional 0 --inference-slots 1 --variant default"
            in baseline["server"]["command"])
    assert [r["streams"] for r in baseline["runs"]] == [1, 2] and baseline["server"]["bundle"]["variant_choice"] == ""
    for run in data["runs"] + baseline["runs"]:
        assert 0 <= run["share_spread"] <= 1.0


def test_curve_plot_and_markdown_with_targets(streams_run):
    out, argv, data = streams_run
    assert (out / streams_report.CURVE_PLOT).read_bytes()[:8] == PNG_MAGIC
    text = streams_report.markdown(out, data)
    assert text.startswith("## tiny-streams\n")
    assert f"`muselens {' '.join(argv)}`" in text
    assert "| server | streams | offered FPS | achieved FPS total | vs baseline |" in text
    assert "| this | 2 | 1000 |" in text and "| baseline | 2 | 1000 |" in text and "Baseline: the server before" in text
    assert "### Targets" in text and text.count("- **MET**") + text.count("- **MISSED**") == 4
    assert "H100: >= 64 concurrent 30-FPS streams" in text
    assert f"![tiny-streams achieved FPS and p99 against streams](results/tiny-streams/{streams_report.CURVE_PLOT})" in text


def _run(n: int, fps: float, offered_ratio: float, p50: float, p99: float) -> dict:
    stage = {"p50": p50 * 0.8, "p99": p99 * 0.8, "count": 10}
    return {"streams": n, "offered_fps_per_stream": fps, "offered_fps_total": n * fps,
            "achieved_fps_total": n * fps * offered_ratio, "latency_ms": {"p50": p50, "p99": p99, "count": 10},
            "stages_ms": {"inference": stage, "queue": {"count": 0}}}


def _latency(short_side: int, stream_p50: float, bare_p50: float, stream_fps: float) -> dict:
    stream = {"e2e": {"p50": stream_p50, "p99": stream_p50, "count": 3},
              "decode": {"p50": 2.0, "p99": 3.0, "count": 3}}
    return {"bundle": {"name": "museum", "short_side": short_side},
            "results": [{"size": 224, "backend": "ort-cpu", "bare": {"stages": {"inference": {"p50": 1.0}}},
                         "modes": {"stream": {"stages": stream, "fps": 999.0}}},
                        {"size": short_side, "backend": "ort-cpu", "bare": {"stages": {"inference": {"p50": bare_p50}}},
                         "modes": {"stream": {"stages": stream, "fps": stream_fps}}}]}


def test_targets_from_the_latency_bench_at_the_served_size():
    data = {"environment": {"cpus": 2, "gpus": []}, "runs": [_run(1, 15, 1.0, 50, 60)], "bare": {}}
    met_ratio, met_fps, cameras, gpu = streams_report.evaluate_targets(data, ("lat", _latency(448, 40.0, 36.0, 26.0)))
    assert met_ratio["verdict"] == "MET" and met_ratio["value"] == pytest.approx(40 / 36)
    assert met_ratio["source"].startswith("latency bench lat") and met_ratio["this_machine"]
    assert met_fps["verdict"] == "MET" and met_fps["value"] == 26.0  # 15 fps offered: too few to say
    assert cameras["verdict"] == "MISSED" and cameras["measured"].startswith("not measured")
    assert gpu["verdict"] == "MISSED" and gpu["value"] is None and not gpu["this_machine"]
    missed_ratio, missed_fps, _, _ = streams_report.evaluate_targets(data, ("lat", _latency(448, 42.0, 36.0, 24.0)))
    assert missed_ratio["verdict"] == missed_fps["verdict"] == "MISSED"
    assert {"stage": "decode", "p50": 2.0, "p99": 3.0} in missed_ratio["breakdown"]


def test_the_latency_ratio_divides_by_the_bare_inference_timed_beside_the_stream():
    """A host that slowed between the bare run and the stream must not count against the stream."""
    data = {"environment": {"cpus": 2, "gpus": []}, "runs": [], "bare": {}}
    latency = _latency(320, 40.0, 30.0, 26.0)
    latency["results"][1]["modes"]["stream"].update(ratio_base_ms=36.0, bare_beside={"p50": 36.0, "count": 3})
    ratio = streams_report.evaluate_targets(data, ("lat", latency))[0]
    assert ratio["value"] == pytest.approx(40 / 36) and ratio["verdict"] == "MET"
    assert ratio["measured"] == "1.11x (40.0 ms vs 36.0 ms timed beside its frames)"


def test_a_run_at_another_size_judges_no_target_of_the_default_size():
    data = {"environment": {"cpus": 2, "gpus": []}, "runs": [_run(1, 30, 1.0, 45.0, 48.0)],
            "bare": {"p50": 40.0, "count": 30}, "settings": {"short_side": 448}}
    ratio, fps, cameras, gpu = streams_report.evaluate_targets(data, ("lat", _latency(320, 20.0, 19.0, 26.0)))
    for t in (ratio, fps, cameras):
        assert t["verdict"] == streams_report.NOT_JUDGED and t["value"] is None and not t["breakdown"]
        assert t["measured"].startswith("not judged: this run served short side 448")
    assert gpu["verdict"] == "MISSED"  # not the machine it is for, whatever the size
    data["settings"]["short_side"] = None  # the bundle's own size: judged
    assert streams_report.evaluate_targets(data, ("lat", _latency(320, 20.0, 19.0, 26.0)))[1]["verdict"] == "MET"


def test_targets_from_the_streams_run_alone():
    bare = {"p50": 40.0, "count": 30}
    runs = [_run(1, 30, 1.0, 45.0, 48.0), _run(32, 30, 0.99, 20.0, 40.0), _run(64, 30, 0.97, 30.0, 49.0),
            _run(128, 30, 0.5, 30.0, 200.0)]
    data = {"environment": {"cpus": 16, "gpus": ["NVIDIA H100 80GB HBM3"]}, "runs": runs, "bare": bare}
    ratio, fps, _, gpu = streams_report.evaluate_targets(data, None)
    assert ratio["value"] == pytest.approx(45 / 40) and ratio["verdict"] == "MET" and not ratio["this_machine"]
    assert fps["value"] == pytest.approx(30) and fps["verdict"] == "MET"  # one camera at 30 fps, all answered
    assert fps["source"] == "this run, 1 stream (open loop)"
    assert gpu["verdict"] == "MET" and gpu["value"] == 64 and gpu["this_machine"]
    runs[2] = _run(64, 30, 0.97, 30.0, 51.0)  # p99 over 50 ms at 64 streams
    _, _, _, gpu = streams_report.evaluate_targets(data, None)
    assert gpu["verdict"] == "MISSED" and gpu["value"] == 32
    assert gpu["breakdown"] == [{"stage": "inference", "p50": 24.0, "p99": 160.0}]  # the largest N's stages
    data["runs"] = [_run(64, 15, 1.0, 10.0, 12.0)]  # never offered 30 fps per stream
    _, _, _, gpu = streams_report.evaluate_targets(data, None)
    assert gpu["verdict"] == "MISSED" and gpu["measured"].startswith("not measured")


def test_four_cameras_against_the_baseline_and_their_fairness():
    def four(total: float, spread: float) -> dict:
        return {**_run(4, 15, total / 60, 50, 60), "share_spread": spread}

    data = {"environment": {"cpus": 2, "gpus": []}, "runs": [four(28.0, 0.05)], "bare": {},
            "baseline": {"runs": [four(24.0, 0.1)]}}
    cameras = streams_report.evaluate_targets(data, None)[2]
    assert cameras["verdict"] == "MET" and cameras["value"] == (pytest.approx(28 / 24), 0.05)
    data["runs"] = [four(28.0, 0.3)]  # one stream far from the mean
    assert streams_report.evaluate_targets(data, None)[2]["verdict"] == "MISSED"
    data["runs"] = [four(25.0, 0.05)]  # 1.04x: not enough
    assert streams_report.evaluate_targets(data, None)[2]["verdict"] == "MISSED"


def test_share_spread():
    from muselens.benchmarks.stream_cameras import share_spread
    assert share_spread([10.0, 10.0, 10.0]) == 0.0
    assert share_spread([12.0, 8.0]) == pytest.approx(0.2)
    assert share_spread([0.0, 0.0]) == 1.0


def test_find_latency_prefers_the_same_bundle_then_its_own_size(tmp_path):
    def write(name: str, bundle: str, created: str, size: int = 448) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "bench.json").write_text(json.dumps(
            {"benchmark": "latency", "bundle": {"name": bundle, "short_side": 448}, "environment": {"created": created},
             "results": [{"size": size, "backend": "ort-cpu"}]}))

    write("a", "museum", "2026-01-01T00:00:00+00:00")
    write("a2", "museum", "2026-03-01T00:00:00+00:00", size=224)  # newer, but not at the served size
    write("b", "other", "2026-06-01T00:00:00+00:00")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "bench.json").write_text(json.dumps({"benchmark": "soak"}))
    assert streams_report.find_latency(tmp_path, {"server": {"bundle": {"name": "museum"}}})[0] == "a"
    assert streams_report.find_latency(tmp_path, {"server": {"bundle": {"name": "x"}}})[0] == "b"
    assert streams_report.find_latency(tmp_path / "c", {}) is None
    # another bundle's bench made after this run does not rewrite this run's targets
    write("d", "other", "2026-09-01T00:00:00+00:00")
    older_run = {"server": {"bundle": {"name": "x"}}, "environment": {"created": "2026-07-01T00:00:00+00:00"}}
    assert streams_report.find_latency(tmp_path, older_run)[0] == "b"
    assert streams_report.find_latency(tmp_path, {"server": {"bundle": {"name": "x"}}})[0] == "d"


def test_cpu_seconds_of_this_process():
    import time

    before = utilisation.cpu_seconds(os.getpid())
    start = time.process_time()
    while time.process_time() - start < 0.1:  # well above /proc's 10 ms clock tick, on any machine
        sum(i * i for i in range(10_000))
    assert utilisation.cpu_seconds(os.getpid()) - before >= 0.05


def streams_args(**given) -> argparse.Namespace:
    """``muselens bench streams`` arguments as the command line parses them."""
    parser = argparse.ArgumentParser()
    streams.add_arguments(parser)
    return argparse.Namespace(**{**vars(parser.parse_args(["--out", "x"])), **given})


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path):
    args = streams_args(bundle=tmp_path / "missing-bundle")
    serve = streams.server_process(args, workers=2)
    assert serve.command()[-8:] == ["--backend", "ort-cpu", "--workers", "2", "--max-streams", "1", "--variant",
                                    "auto"]
    assert streams.server_process(streams_args(bundle=tmp_path, inference_slots=3), workers=2).command()[-2:] == \
        ["--inference-slots", "3"]
    sized = streams.server_process(streams_args(bundle=tmp_path, short_side=448), workers=2).command()
    assert sized[sized.index("--short-side") + 1] == "448"
    with pytest.raises(RuntimeError, match=r"did not start \(exit 2.*its log ends: error: .*missing-bundle"):
        serve.start(timeout=60)
    assert serve.process.returncode == 2
    serve.close_log()


def test_the_server_started_here_admits_every_camera(tmp_path):
    """serve's default stream cap is three quarters of its workers: 64 cameras on 72 workers would see
    10 streams refused (RESOURCE_EXHAUSTED), as the first GPU check did."""
    command = streams.server_process(streams_args(bundle=tmp_path, streams=[1, 64]), workers=72).command()
    assert command[command.index("--max-streams") + 1] == "64"
    command = streams.server_process(streams_args(bundle=tmp_path, streams=[64]), workers=16).command()
    assert command[command.index("--max-streams") + 1] == "16"  # never above the workers: serve refuses that


def test_an_unreachable_server_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(streams, "SERVER_WAIT_S", 0.3)
    assert cli(["bench", "streams", "--server", "127.0.0.1:1", "--out", str(tmp_path / "x"), "--frames", "1"]) == 2
    assert "no server answered at 127.0.0.1:1 within 0.3 s" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flags, message", [([], "give a BUNDLE to serve, or --server"),
                                            (["BUNDLE", "--fps", "0"], "--fps must be > 0"),
                                            (["BUNDLE", "--inference-slots", "0"], "--inference-slots must be >= 1"),
                                            (["BUNDLE", "--server", "127.0.0.1:1", "--inference-slots", "2"],
                                             "--inference-slots configures the server started here"),
                                            (["BUNDLE", "--short-side", "0"], "--short-side must be >= 1"),
                                            (["BUNDLE", "--server", "127.0.0.1:1", "--short-side", "448"],
                                             "--short-side configures the server started here"),
                                            (["BUNDLE", "--token-file", "t"], "--token-file is for --server"),
                                            (["BUNDLE", "--server", "127.0.0.1:1", "--baseline"],
                                             "--baseline starts a second server here")])
def test_bad_arguments_exit_2_naming_the_problem(tiny_bundle, tmp_path, capsys, flags, message):
    flags = [str(tiny_bundle) if f == "BUNDLE" else f for f in flags]
    assert cli(["bench", "streams", *flags, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not Path(tmp_path / "x").exists()

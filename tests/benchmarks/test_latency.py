from __future__ import annotations

import json

import numpy as np
import pytest

import muselens.runtime.engine as engine
from muselens.benchmarks import latency
from muselens.cli import main as cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def latency_run(tiny_bundle, tmp_path_factory):
    """One real run on the tiny bundle: 2 sizes, every mode, 3 frames; ort-cuda asked for but absent."""
    out = tmp_path_factory.mktemp("bench") / "tiny-latency"
    argv = ["bench", "latency", str(tiny_bundle), "--out", str(out), "--sizes", "64,96", "--frames", "3",
            "--warmup", "1", "--threads", "1", "--backends", "ort-cpu,ort-cuda"]
    with pytest.MonkeyPatch.context() as mp:  # the same on a machine whose onnxruntime has CUDA
        mp.setattr(engine, "available_backends", lambda: ["ort-cpu"])
        assert cli(argv) == 0
    return out, argv, json.loads((out / "bench.json").read_text())


def test_every_mode_and_stage_is_measured_against_bare_inference(latency_run):
    _, argv, data = latency_run
    assert data["benchmark"] == "latency" and data["command"] == "muselens " + " ".join(argv)
    assert data["default_size"] == 64  # the tiny bundle's own short side
    assert [(e["size"], e["backend"]) for e in data["results"]] == [(64, "ort-cpu"), (96, "ort-cpu")]
    expected = {"inprocess": {"decode", "preprocess", "inference", "match", "e2e"},
                "verified": {"decode", "preprocess", "inference", "match", "verify", "e2e"},
                "heatmap": {"decode", "preprocess", "inference", "match", "heatmap", "e2e"},
                "unary": {"decode", "preprocess", "inference", "match", "transport", "e2e"},
                "stream": {"queue", "decode", "preprocess", "track", "inference", "match", "transport", "e2e"},
                "stream_baseline": {"queue", "decode", "preprocess", "track", "inference", "match", "transport",
                                    "e2e"}}
    for entry in data["results"]:
        h, w = entry["input_hw"][0]
        assert min(h, w) == entry["size"]  # 1280x720 frames resized to the short side
        bare = entry["bare"]["stages"]["inference"]
        assert bare["count"] == 3 and bare["p50"] > 0 and bare["ratio"]["p50"] == pytest.approx(1.0)
        assert set(entry["modes"]) == set(expected)
        assert entry["variant"] == "fp32" and entry["variant_choice"]["variant"] == "fp32"  # serve's choice
        background = {"verification_age", "background_verify"}  # the stream's, when a verification came back
        for mode, stages in expected.items():
            summary = entry["modes"][mode]
            assert set(summary["stages"]) - (background if mode.startswith("stream") else set()) == stages, mode
            # the yardstick of a mode's ratios: the bare inference timed between its frames, where nothing
            # else of the server ran (a stream's background verification may have overlapped some)
            beside = summary.get("bare_beside")
            if mode.startswith("stream") and beside is None:
                beside = bare
                assert summary["ratio_base"] == "bare" and summary["ratio_base_ms"] == bare["p50"]
            else:
                assert 1 <= beside["count"] <= 3 and beside["p50"] > 0, mode
                assert beside["count"] == 3 or mode.startswith("stream"), mode
                assert summary["ratio_base"] == "bare_beside" and summary["ratio_base_ms"] == beside["p50"]
            for stage, stats in summary["stages"].items():
                if stage in background:
                    assert 1 <= stats["count"] <= 3 and stats["p50"] > 0
                    continue
                assert stats["count"] == 3, (mode, stage)  # closed loop: no frame dropped
                assert stats["p50"] <= stats["p95"] <= stats["p99"]
                assert stats["ratio"]["p50"] == pytest.approx(stats["p50"] / beside["p50"])
                if stage != "queue":  # a closed-loop frame may wait ~0 ms
                    assert stats["p50"] > 0 and stats["ratio"]["p50"] > 0, (mode, stage)
            e2e = summary["stages"]["e2e"]
            assert summary["fps"] == pytest.approx(1000 / e2e["mean"])
            assert e2e["p50"] >= summary["stages"]["inference"]["p50"]
            assert len(summary["e2e_samples_ms"]) == 3


def test_unavailable_backends_and_the_gpu_reference_are_reported_with_reasons(latency_run):
    _, _, data = latency_run
    assert data["settings"]["backends"] == ["ort-cpu", "ort-cuda"]
    [skip] = data["skipped"]
    assert skip["backend"] == "ort-cuda" and "not available" in skip["reason"]
    assert data["hardware_reference"] == {"status": "skipped",
                                          "reason": "no --run given (the training run holds the PyTorch model)"}


def test_plots_and_markdown_section(latency_run):
    out, argv, data = latency_run
    for plot in (latency.HIST_PLOT, latency.STAGE_PLOT):
        assert (out / plot).read_bytes()[:8] == PNG_MAGIC
    text = latency.markdown(out, data)
    assert text.startswith("## tiny-latency\n")
    assert f"`muselens {' '.join(argv)}`" in text
    assert "| size | input | backend | mode | e2e ms p50 / p95 / p99 | FPS | bare p50 beside |" in text
    unary = data["results"][0]["modes"]["unary"]
    assert f"| {unary['bare_beside']['p50']:.1f} | {unary['stages']['e2e']['ratio']['p50']:.2f}x |" in text
    for mode in ("bare", "inprocess", "verified", "heatmap", "unary", "stream"):
        assert f"| 64 | 64x114 | ort-cpu | {mode} |" in text
    assert "skipped `ort-cuda`" in text and "hardware reference (PyTorch fp16 CUDA graph) skipped" in text
    assert f"![tiny-latency end-to-end latency per mode](results/tiny-latency/{latency.HIST_PLOT})" in text


@pytest.mark.parametrize("flags, message", [(["--modes", "inprocess,teleport"], "unknown mode"),
                                            (["--backends", "ort-gpu"], "unknown backend"),
                                            (["--frames", "0"], "--frames must be >= 1")])
def test_bad_arguments_exit_2_naming_the_problem(tiny_bundle, tmp_path, capsys, flags, message):
    assert cli(["bench", "latency", str(tiny_bundle), "--out", str(tmp_path / "x"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_no_measurable_backend_is_an_error(tiny_bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(engine, "available_backends", lambda: ["ort-cpu"])
    assert cli(["bench", "latency", str(tiny_bundle), "--out", str(tmp_path / "x"), "--backends", "tensorrt",
                "--frames", "1"]) == 2
    assert "no backend could be measured: tensorrt: not available" in capsys.readouterr().err


def test_a_bare_run_beside_the_server_s_other_work_is_not_kept(tiny_bundle):
    """The yardstick is the engine alone: a run that starts or ends while the server is verifying
    in the background (counted by ACTIVITY) is left out, and so is every sample of a mode that left
    the engine alone too rarely."""
    from muselens.runtime.engine.activity import ACTIVITY
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig

    model = ServedModel.load(tiny_bundle, ServingConfig(threads=1))
    try:
        run = latency.bare_beside(model.describer, [np.zeros((64, 114, 3), np.uint8)])
        assert run(0) > 0
        with ACTIVITY.busy():
            assert run(0) is None
    finally:
        model.close()
    values = {"e2e": [10.0] * 8, "inference": [8.0] * 8}
    few = latency._mode_summary({**values, latency.BARE_BESIDE: [5.0]}, 8.0, keep_samples=False)
    assert few["ratio_base"] == "bare" and few["stages"]["e2e"]["ratio"]["p50"] == pytest.approx(10 / 8)
    enough = latency._mode_summary({**values, latency.BARE_BESIDE: [5.0, 5.0]}, 8.0, keep_samples=False)
    assert enough["ratio_base"] == "bare_beside" and enough["stages"]["e2e"]["ratio"]["p50"] == pytest.approx(2.0)


def test_default_size_is_the_bundle_short_side_or_the_closest():
    assert latency.default_size([224, 320, 448], 448) == 448
    assert latency.default_size([224, 320], 448) == 320
    assert latency.default_size([64, 96], 80) == 64  # ties go to the smaller


def test_descriptor_forward_computes_what_the_exported_graph_does(trained):
    torch = pytest.importorskip("torch")
    from muselens.export.inference_graph import InferenceGraph

    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8))
    with torch.inference_mode():
        expected = InferenceGraph(trained)(image)[0]
        got = latency.descriptor_forward(trained)(image)
    assert got.shape == expected.shape
    assert float(torch.nn.functional.cosine_similarity(got, expected).min()) > 0.9999


def test_the_gpu_reference_says_why_it_is_skipped(run_dir):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present (see the gpu-marked test)")
    result = latency.torch_cuda_graph_reference(run_dir, {64: (64, 114)}, runs=2, warmup=1)
    assert result == {"status": "skipped", "reason": "CUDA is not available to torch on this machine"}


@pytest.mark.gpu
def test_the_gpu_reference_replays_a_cuda_graph(run_dir):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    result = latency.torch_cuda_graph_reference(run_dir, {64: (64, 114), 96: (96, 171)}, runs=5, warmup=2)
    assert result["status"] == "measured" and result["precision"] == "fp16"
    for size, hw in (("64", [64, 114]), ("96", [96, 171])):
        assert result["sizes"][size]["input_hw"] == hw
        assert result["sizes"][size]["count"] == 5 and result["sizes"][size]["p50"] > 0

"""``muselens bench latency``: where a frame's time goes, per recognition size and backend.

For every size (the recognition short side) and every backend it measures, on the same frames:

* ``bare``: the engine alone on the pre-resized uint8 tensor, output ``descriptor`` -- exactly
  the call :class:`~muselens.runtime.recognition.served_model.ServedModel` makes; the yardstick every
  other figure is divided by. Each mode also times it once between every two of its frames
  (``bare_beside``) and divides by that: a shared host's speed moves within a minute, and a
  yardstick measured a minute before the mode would measure the host's drift;
* ``inprocess``: ``ServedModel.recognize`` from JPEG bytes to result (decode included);
* ``verified``: the same with geometric verification on the critical path (``verify=True``:
  local features of the frame fitted to the shortlist's references), what a unary call costs
  by default when the bundle has local features;
* ``heatmap``: ``inprocess`` with ``explain=True`` (what heatmaps cost);
* ``unary``: a client's ``Recognize`` call, descriptor path only, against a server started in this
  process on port 0;
* ``stream``: ``StreamRecognize`` in closed loop (the next frame leaves only after the previous
  answer), so nothing is dropped and every latency is one frame's. Verification runs beside it as
  the server does by default (in the background, at low priority); the mode also reports how
  many frames were verified and how old each verification was when it reached the stream;
* ``stream_baseline``: the same against the stream as served before pipelining and reduced JPEG
  decoding (``muselens serve --pipeline off --reduced-decode off``): what those levers gained, in
  the same run. (In closed loop there is no next frame to prepare during an inference, so the
  difference is the decoding's.)

``inprocess``, ``heatmap`` and ``unary`` turn verification off, so that they measure the
descriptor path as before verification existed.

Each mode reports per-stage p50/p95/p99, FPS (1000 / mean end-to-end ms) and every figure as a
ratio to the bare inference p50 of the same size and backend. On a machine where torch sees a
GPU, ``--run`` adds the hardware reference: the trained network's descriptor forward in fp16,
captured once as a CUDA graph and replayed on a device-resident input.
"""

from __future__ import annotations

import argparse
import dataclasses
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from muselens.benchmarks import common
from muselens.benchmarks.load import csv_ints, csv_names, fps, load_frames, recognition_timings, summarise

MODES = ("inprocess", "verified", "unary", "stream", "stream_baseline", "heatmap")
DEFAULT_SIZES = (224, 320, 448)
HIST_PLOT = "latency_hist.png"
STAGE_PLOT = "stages.png"
# The bare inference timed between a mode's frames, one per frame: what its ratios divide by.
BARE_BESIDE = "bare_beside"
MIN_BESIDE_SHARE = 0.25  # of a mode's frames: fewer bare runs alone beside them, and its ratios use ``bare``
# Stages shown in tables and the stage plot, in pipeline order ("transport" = client e2e - server total).
TABLE_STAGES = ("queue", "decode", "preprocess", "track", "inference", "match", "verify", "heatmap", "transport")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from muselens.runtime.engine import BACKENDS

    parser.add_argument("bundle", type=Path, help="bundle folder or .tar.gz archive")
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json and the plots")
    parser.add_argument("--sizes", type=csv_ints, default=list(DEFAULT_SIZES),
                        help="recognition short sides, comma-separated (default: 224,320,448)")
    parser.add_argument("--backends", type=csv_names, default=None,
                        help=f"backends to measure, comma-separated, of {', '.join(BACKENDS)} "
                             "(default: every one available here); unavailable ones are reported as skipped")
    parser.add_argument("--modes", type=csv_names, default=list(MODES),
                        help=f"what to measure besides bare inference, of {', '.join(MODES)} (default: all)")
    parser.add_argument("--frames", type=int, default=100, help="measured frames per mode (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="unmeasured frames before each mode (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: the backend's choice)")
    parser.add_argument("--variant", default="auto",
                        help="model variant, as muselens serve's --variant: a name, 'default' or 'auto' (the "
                             "default: what serve chooses, the fastest here within 0.5 mP@1 points of fp32)")
    parser.add_argument("--verify-interval", type=float, default=0.5,
                        help="seconds between the stream's background verifications, as serve's flag "
                             "(default: %(default)s)")
    parser.add_argument("--data", type=Path, default=None,
                        help="a museum dataset whose query photos are the frames (default: synthetic camera frames)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic frames (default: %(default)s)")
    parser.add_argument("--run", type=Path, default=None,
                        help="the bundle's training run: with a CUDA GPU, adds the PyTorch fp16 CUDA-graph reference")


# -- measuring ------------------------------------------------------------------------------


def _sequence(frames: Sequence[bytes], warmup: int) -> list[bytes]:
    """Warm-up frames (the first ones, repeated if needed) followed by the measured frames."""
    return [frames[i % len(frames)] for i in range(warmup)] + list(frames)


def _bare_run(describer, resized: Sequence[np.ndarray]) -> Callable[[int], float]:
    """``run(i)``: milliseconds of the engine alone on pre-resized frame ``i`` (cycling), ``descriptor``
    only -- exactly the call ``ServedModel`` makes."""
    batches = [np.ascontiguousarray(r[None]) for r in resized]
    backend = describer.backend

    def run(i: int) -> float:
        t0 = time.perf_counter()
        backend.run(batches[i % len(batches)], ["descriptor"])
        return (time.perf_counter() - t0) * 1e3

    return run


def measure_bare(describer, resized: Sequence[np.ndarray], warmup: int) -> dict[str, list[float]]:
    """The engine alone on pre-resized frames, ``descriptor`` only: ms per frame."""
    run = _bare_run(describer, resized)
    for i in range(warmup):
        run(i)
    times = [run(i) for i in range(len(resized))]
    return {"inference": times, "e2e": list(times)}


def bare_beside(describer, resized: Sequence[np.ndarray]) -> Callable[[int], float | None]:
    """``run(i)``: one bare inference of measured frame ``i`` (ms), to time between a mode's frames.

    This host's speed can move by 2x within a minute; a ratio of two figures measured a minute
    apart then says more about the host than about the serving. Timed frame by frame beside the
    mode, the bare inference meets the same host as the mode's frames. It is the engine *alone*:
    a run that overlapped other work of the server in this process (a stream's background
    verification, counted by :data:`~muselens.runtime.engine.activity.ACTIVITY`) is not kept
    (None), since right after an answer is when a verification has just started, and keeping
    those runs inflated the yardstick (stream at 448: 56 ms beside against 41 ms in the server)."""
    from muselens.runtime.engine.activity import ACTIVITY

    bare = _bare_run(describer, resized)

    def run(i: int) -> float | None:
        if ACTIVITY.count:
            return None
        ms = bare(i)
        return None if ACTIVITY.count else ms

    return run


def _beside(out: dict[str, list[float]], beside: Callable[[int], float | None] | None, i: int) -> None:
    if beside is not None and (ms := beside(i)) is not None:
        out.setdefault(BARE_BESIDE, []).append(ms)


def measure_inprocess(model, frames: Sequence[bytes], warmup: int, *, explain: bool, verify: bool = False,
                      beside: Callable[[int], float | None] | None = None) -> dict[str, list[float]]:
    """Frame bytes to result in this process: decode, then ``ServedModel.recognize``."""
    from muselens.runtime.frames import decode_encoded
    from muselens.runtime.recognition.options import RecognizeOptions

    if verify and model.verifier is None:
        raise RuntimeError("the bundle has no local features: verification cannot be measured (export it with "
                           "--local-features orb)")
    options = RecognizeOptions(explain=explain, verify=verify)
    stages = ("decode", "preprocess", "inference", "match", *(("verify",) if verify else ()),
              *(("heatmap",) if explain else ()))
    out: dict[str, list[float]] = {s: [] for s in (*stages, "e2e")}
    need = model.decode_need(verify=verify)  # decoded no larger than the call needs, as the service does
    for i, data in enumerate(_sequence(frames, warmup)):
        t0 = time.perf_counter()
        pixels = decode_encoded(data, at_least=need)
        t1 = time.perf_counter()
        result = model.recognize(pixels, options, timings_ms={"decode": (t1 - t0) * 1e3})
        e2e = (time.perf_counter() - t0) * 1e3
        if explain and not result.heatmaps:
            raise RuntimeError("explain=True gave no heatmaps: the heatmap cost would not be measured")
        if i >= warmup:
            for s in stages:
                out[s].append(float(result.timings_ms[s]))
            out["e2e"].append(e2e)
            _beside(out, beside, i - warmup)
    return out


def _server_stages(out: dict[str, list[float]], recognition, e2e_ms: float, stages: Sequence[str]) -> None:
    t = recognition_timings(recognition)
    for s in stages:
        out[s].append(t[s])
    out["transport"].append(e2e_ms - t["total"])
    out["e2e"].append(e2e_ms)


def measure_unary(client, frames: Sequence[bytes], warmup: int,
                  beside: Callable[[int], float | None] | None = None) -> dict[str, list[float]]:
    """Client end-to-end ``Recognize`` time; server stages from the answer's timings."""
    stages = ("decode", "preprocess", "inference", "match")
    out: dict[str, list[float]] = {s: [] for s in (*stages, "transport", "e2e")}
    from muselens.v1 import recognition_pb2 as pb

    for i, data in enumerate(_sequence(frames, warmup)):
        t0 = time.perf_counter()
        recognition = client.recognize(data, frame_id=str(i), options=pb.RecognizeOptions(verify=pb.VERIFY_MODE_OFF))
        e2e = (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            _server_stages(out, recognition, e2e, stages)
            _beside(out, beside, i - warmup)
    return out


def measure_stream(client, frames: Sequence[bytes], warmup: int, *, turn_timeout: float = 60.0,
                   beside: Callable[[int], float | None] | None = None) -> dict[str, list[float]]:
    """``StreamRecognize`` in closed loop: each frame leaves after the previous answer arrived
    (and, with ``beside``, after one bare inference timed between the two)."""
    from muselens.runtime.client.client import frame_message

    sequence = _sequence(frames, warmup)
    stages = ("queue", "decode", "preprocess", "track", "inference", "match")
    out: dict[str, list[float]] = {s: [] for s in (*stages, "transport", "e2e")}
    turn: queue.Queue[None] = queue.Queue()
    turn.put(None)
    done = threading.Event()
    sent: dict[str, float] = {}

    def requests():
        for i, data in enumerate(sequence):
            deadline = time.monotonic() + turn_timeout
            while True:  # wait for the previous answer, but never outlive the call
                try:
                    turn.get(timeout=0.2)
                    break
                except queue.Empty:
                    if done.is_set() or time.monotonic() > deadline:
                        return
            if done.is_set():
                return
            message = frame_message(data, frame_id=str(i), timestamp=i / 30.0)
            sent[str(i)] = time.perf_counter()
            yield message

    answered = 0
    verified_frames: set[str] = set()
    try:
        for recognition in client.stream(requests(), reconnect=False):
            now = time.perf_counter()
            if recognition.HasField("error"):
                raise RuntimeError(f"frame {recognition.frame_id} failed: {recognition.error.reason}: "
                                   f"{recognition.error.message}")
            if int(recognition.frame_id) >= warmup:
                _server_stages(out, recognition, (now - sent[recognition.frame_id]) * 1e3, stages)
                v = recognition.verification
                if v.frame_id and v.frame_id not in verified_frames and int(v.frame_id) >= warmup:
                    verified_frames.add(v.frame_id)  # first reported: how long after its frame arrived
                    out.setdefault("verification_age", []).append(float(v.age_ms))
                    out.setdefault("background_verify", []).append(float(v.verify_ms))
                _beside(out, beside, int(recognition.frame_id) - warmup)
            answered += 1
            turn.put(None)
    finally:
        done.set()
    if answered != len(sequence):
        raise RuntimeError(f"the closed-loop stream answered {answered} of {len(sequence)} frames")
    return out


def _mode_summary(values: Mapping[str, list[float]], bare_p50: float, keep_samples: bool) -> dict[str, Any]:
    """Per-stage statistics as ratios to the bare inference p50: the one timed beside the mode's
    frames where there is one (``bare_beside``), else the bare run measured before the modes."""
    beside = values.get(BARE_BESIDE)
    if beside and len(beside) < MIN_BESIDE_SHARE * len(values["e2e"]):
        beside = None  # the mode left the engine alone too rarely to time it: the bare run before it
    base = common.percentiles(beside)["p50"] if beside else bare_p50
    stages = summarise({k: v for k, v in values.items() if k != BARE_BESIDE}, base)
    summary: dict[str, Any] = {"stages": stages, "fps": fps(stages["e2e"]["mean"]), "ratio_base_ms": base,
                               "ratio_base": BARE_BESIDE if beside else "bare"}
    if beside:
        summary[BARE_BESIDE] = common.percentiles(beside)
    if keep_samples:
        summary["e2e_samples_ms"] = [round(v, 4) for v in values["e2e"]]
    return summary


# -- the PyTorch hardware reference ---------------------------------------------------------


def descriptor_forward(trained, dtype=None) -> Callable:
    """``(1, H, W, 3)`` uint8 tensor -> ``(1, D)`` descriptor: the exported graph's computation,
    written without host synchronisation so that it can be captured as a CUDA graph.

    The training code's input checks read tensor values (NaN and index-range checks), which a
    capturing stream forbids; here the regions are picked with ``topk`` (the exported graph's
    rule) and gathered directly. Imports torch lazily.
    """
    import torch

    from muselens.export.inference_graph import InferenceGraph, normalise_pixels
    from muselens.training.regions import aggregate_regions, dense_class_logits, max_class_activation

    graph = InferenceGraph(trained)
    dtype = torch.float32 if dtype is None else dtype
    net = graph.net.to(dtype)  # shares the backbone with graph.backbone
    graph.backbone.to(dtype)
    offset, factor = graph.offset.float(), graph.factor.float()
    k = net.k

    def forward(image):
        x = normalise_pixels(image, offset, factor).to(dtype)
        fmap = graph.backbone.features(x)
        activation = max_class_activation(dense_class_logits(fmap, net.classifier))
        locations = torch.topk(activation.flatten(1), k, dim=1).indices
        dmap = net.head.descriptor_map(fmap)
        n, d = dmap.shape[:2]
        picked = dmap.flatten(2).gather(2, locations[:, None, :].expand(n, d, k)).transpose(1, 2)
        return aggregate_regions(picked)

    return forward


def torch_cuda_graph_reference(run: Path | None, shapes: Mapping[int, tuple[int, int]], runs: int,
                               warmup: int) -> dict[str, Any]:
    """ms per frame of the fp16 CUDA-graph descriptor forward at each size's input shape, or why not."""
    if run is None:
        return {"status": "skipped", "reason": "no --run given (the training run holds the PyTorch model)"}
    try:
        import torch
    except ImportError:
        return {"status": "skipped", "reason": "torch is not installed"}
    if not torch.cuda.is_available():
        return {"status": "skipped", "reason": "CUDA is not available to torch on this machine"}
    from muselens.training.trained import TrainedModel

    trained = TrainedModel(run, device="cuda")
    forward = descriptor_forward(trained, torch.float16)
    sizes: dict[str, Any] = {}
    with torch.inference_mode():
        for size, (h, w) in shapes.items():
            generator = torch.Generator(device="cuda").manual_seed(0)
            static = torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8, device="cuda", generator=generator)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up on a side stream, as capture requires
                for _ in range(3):
                    forward(static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                forward(static)
            for _ in range(max(warmup, 1)):
                graph.replay()
            torch.cuda.synchronize()
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                graph.replay()
                torch.cuda.synchronize()
                times.append((time.perf_counter() - t0) * 1e3)
            sizes[str(size)] = {"input_hw": [h, w], **common.percentiles(times)}
    return {"status": "measured", "precision": "fp16", "device": torch.cuda.get_device_name(0),
            "torch": torch.__version__, "what": "descriptor forward (normalise, backbone, region head) as one "
                                                "CUDA graph replay on a device-resident input", "sizes": sizes}


# -- the command ----------------------------------------------------------------------------


def _check_args(args: argparse.Namespace) -> None:
    from muselens.runtime.engine import BACKENDS

    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; expected some of {list(MODES)}")
    if args.backends is not None:
        unknown = [b for b in args.backends if b not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown backend(s) {unknown}; expected some of {list(BACKENDS)}")
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")


def default_size(sizes: Sequence[int], bundle_short_side: int) -> int:
    """The size the histogram shows: the bundle's own short side, else the listed size closest to it."""
    return min(sizes, key=lambda s: (abs(s - bundle_short_side), s))


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_latency(args: argparse.Namespace) -> dict[str, Any]:
    """Measure everything ``args`` asks for; the bench.json payload."""
    from muselens.runtime.bundle import load_bundle
    from muselens.runtime.client.client import MuselensClient
    from muselens.runtime.engine import BackendUnavailable, available_backends
    from muselens.runtime.frames import decode_encoded
    from muselens.runtime.recognition.holder import ModelHolder
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig
    from muselens.runtime.server.app import MuselensServer, ServerConfig

    _check_args(args)
    available = available_backends()
    requested = list(args.backends) if args.backends is not None else available
    skipped = [{"backend": b, "reason": f"not available on this machine (available: {', '.join(available)})"}
               for b in requested if b not in available]
    backends = [b for b in requested if b in available]
    with load_bundle(args.bundle) as bundle:
        manifest = bundle.manifest
        bundle_info = {"name": manifest.name, "bundle_version": manifest.bundle_version,
                       "backbone": manifest.backbone, "short_side": manifest.descriptor.short_side,
                       "variant": manifest.default_variant if args.variant in (None, "default") else args.variant}
    frames, source = load_frames(args.data, args.frames, seed=args.seed)
    pixels = [decode_encoded(f) for f in dict.fromkeys(frames)]
    frame_hw = sorted({tuple(p.shape[:2]) for p in pixels})
    results: list[dict[str, Any]] = []
    shapes: dict[int, tuple[int, int]] = {}
    for backend in backends:
        for size in args.sizes:
            _progress(f"latency: {backend} at short side {size}")
            try:
                variant = None if args.variant == "default" else args.variant
                model = ServedModel.load(args.bundle, ServingConfig(backend=backend, variant=variant,
                                                                    threads=args.threads, short_side=size))
            except BackendUnavailable as exc:
                skipped.append({"backend": backend, "size": size, "reason": str(exc)})
                _progress(f"  skipped: {exc}")
                break  # the backend will not start at another size either
            try:
                resized = [model.describer.resize(decode_encoded(f)) for f in frames]
                shapes.setdefault(size, tuple(resized[0].shape[:2]))
                bare_values = measure_bare(model.describer, resized, args.warmup)
                bare_p50 = common.percentiles(bare_values["inference"])["p50"]
                beside = bare_beside(model.describer, resized)
                entry: dict[str, Any] = {
                    "size": size, "backend": backend, "engine": model.describer.backend.describe(),
                    "input_hw": [list(hw) for hw in sorted({tuple(r.shape[:2]) for r in resized})],
                    "bare": _mode_summary(bare_values, bare_p50, keep_samples=True), "modes": {}}
                for mode in [m for m in MODES if m in args.modes and m in ("inprocess", "verified", "heatmap")]:
                    if mode == "verified" and model.verifier is None:
                        skipped.append({"backend": backend, "size": size, "mode": mode,
                                        "reason": "the bundle has no local features"})
                        continue
                    _progress(f"  {mode}")
                    values = measure_inprocess(model, frames, args.warmup, explain=mode == "heatmap",
                                               verify=mode == "verified", beside=beside)
                    entry["modes"][mode] = _mode_summary(values, bare_p50, keep_samples=True)
                entry["variant"] = model.variant
                if model.variant_choice is not None:
                    entry["variant_choice"] = model.variant_choice.to_dict()
                for mode in [m for m in MODES if m in args.modes and m in ("unary", "stream", "stream_baseline")]:
                    baseline = mode == "stream_baseline"
                    served = dataclasses.replace(model, config=dataclasses.replace(model.config, reduced_decode=False)) \
                        if baseline else model
                    server = MuselensServer(ModelHolder(served), ServerConfig(
                        host="127.0.0.1", port=0, verify_interval_s=args.verify_interval,
                        pipeline=not baseline)).start()
                    try:
                        with MuselensClient(f"127.0.0.1:{server.port}") as client:
                            client.wait_ready()
                            _progress(f"  {mode}")
                            measure = measure_unary if mode == "unary" else measure_stream
                            values = measure(client, frames, args.warmup, beside=beside)
                            entry["modes"][mode] = _mode_summary(values, bare_p50, keep_samples=True)
                    finally:
                        server.stop(0)
                results.append(entry)
            finally:
                model.close()
    if not results:
        raise RuntimeError("no backend could be measured: " + "; ".join(f"{s['backend']}: {s['reason']}"
                                                                           for s in skipped))
    _progress("latency: PyTorch fp16 CUDA-graph reference")
    reference = torch_cuda_graph_reference(args.run, shapes, args.frames, args.warmup)
    if reference["status"] == "measured":
        for size, stats in reference["sizes"].items():
            stats["ratio_to_bare_p50"] = {e["backend"]: stats["p50"] / e["bare"]["stages"]["inference"]["p50"]
                                          for e in results if str(e["size"]) == size}
    else:
        _progress(f"  skipped: {reference['reason']}")
    bundle_info["variant"] = results[0].get("variant", bundle_info["variant"])
    return {"bundle": bundle_info, "default_size": default_size(args.sizes, bundle_info["short_side"]),
            "settings": {"sizes": list(args.sizes), "backends": requested,
                         "modes": [m for m in MODES if m in args.modes],
                         "frames": args.frames, "warmup": args.warmup, "threads": args.threads,
                         "frame_source": source, "frame_sizes_hw": [list(hw) for hw in frame_hw]},
            "skipped": skipped, "results": results, "hardware_reference": reference}


def main(args: argparse.Namespace) -> int:
    try:
        payload = run_latency(args)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = common.write_bench(args.out, "latency", getattr(args, "argv", None), payload)
    plot_histograms(payload, args.out / HIST_PLOT)
    plot_stages(payload, args.out / STAGE_PLOT)
    print("\n".join(table(payload)))
    for s in payload["skipped"]:
        print(f"skipped {s['backend']}: {s['reason']}")
    print(f"wrote {path}")
    return 0


# -- reporting ------------------------------------------------------------------------------


def _cell(stats: Mapping[str, Any] | None) -> str:
    if not stats or not stats.get("count"):
        return "-"
    ratio = stats.get("ratio", {}).get("p50")
    return f"{stats['p50']:.1f}" + (f" ({ratio:.2f}x)" if ratio is not None else "")


def _beside_cell(summary: Mapping[str, Any]) -> str:
    beside = summary.get(BARE_BESIDE)
    return f"{beside['p50']:.1f}" if beside else "-"


def _has_beside(data: Mapping[str, Any]) -> bool:
    return any(BARE_BESIDE in m for e in data["results"] for m in e["modes"].values())


def table(data: Mapping[str, Any]) -> list[str]:
    """One row per size, backend and mode: e2e p50/p95/p99, FPS, and per-stage p50 (ratio to bare p50)."""
    beside = _has_beside(data)  # bench.json files written before the yardstick was timed beside each mode
    header = ("| size | input | backend | mode | e2e ms p50 / p95 / p99 | FPS | "
              + ("bare p50 beside | " if beside else "") + "e2e p50 / bare p50 | " + " | ".join(TABLE_STAGES) + " |")
    rows = [header, "|" + "---|" * (7 + beside + len(TABLE_STAGES))]
    for entry in data["results"]:
        hw = " ".join(f"{h}x{w}" for h, w in entry["input_hw"])
        for mode, summary in {"bare": entry["bare"], **entry["modes"]}.items():
            stages = summary["stages"]
            e2e = stages["e2e"]
            cells = [_cell(stages.get(s)) for s in TABLE_STAGES]
            rows.append(f"| {entry['size']} | {hw} | {entry['backend']} | {mode} | "
                        f"{e2e['p50']:.1f} / {e2e['p95']:.1f} / {e2e['p99']:.1f} | {summary['fps']:.1f} | "
                        + (f"{_beside_cell(summary)} | " if beside else "")
                        + f"{e2e['ratio']['p50']:.2f}x | " + " | ".join(cells) + " |")
    return rows


def markdown(folder: Path, data: dict) -> str:
    b, s = data["bundle"], data["settings"]
    lines = [f"## {folder.name}", "", f"`{data['command']}`", "", common.machine_line(data["environment"]) + ".", "",
             f"Bundle `{b['name']}` {b['bundle_version']} ({b['backbone']}, variant {b['variant']}, trained short "
             f"side {b['short_side']}); frames: {s['frame_source']}; {s['frames']} measured + {s['warmup']} warm-up "
             f"frames per mode; inference threads {s['threads'] or 'backend default'}.", "",
             "Stage cells: p50 ms (ratio to the bare inference p50 of the same size and backend). `bare` is the "
             "engine alone on the pre-resized frame" + (
                 ", measured before the modes; each mode's ratios divide by `bare p50 beside`: the same bare "
                 "inference timed between every two of the mode's frames while the server did nothing else, so "
                 "that a host whose speed drifts meets both alike" if _has_beside(data) else "")
             + "; `transport` is the client's end-to-end time minus the "
             "server's total; `unary` and `stream` call a server started in the benchmark's process on port 0, "
             "`stream` in closed loop (no drops); `stream_baseline` the same stream served as before "
             "pipelining and reduced JPEG decoding; FPS = 1000 / mean end-to-end ms.", "",
             *table(data), ""]
    for entry in data["results"]:
        choice = entry.get("variant_choice")
        if choice and choice.get("latency_ms"):
            timed = ", ".join(f"{v} {ms:.1f} ms" for v, ms in sorted(choice["latency_ms"].items(), key=lambda kv: kv[1]))
            left = "; ".join(f"{v}: {why}" for v, why in choice.get("excluded", {}).items())
            lines.append(f"- {entry['size']} {entry['backend']}: variant {entry['variant']} chosen as serve does "
                         f"({timed}){'; not eligible: ' + left if left else ''}")
        age = entry["modes"].get("stream", {}).get("stages", {}).get("verification_age")
        if age and age.get("count"):
            work = entry["modes"]["stream"]["stages"]["background_verify"]
            lines.append(f"- {entry['size']} {entry['backend']} stream: {age['count']} frames verified beside the "
                         f"stream (in the background, {work['p50']:.0f} ms each at p50); a verification reached "
                         f"the stream {age['p50']:.0f} ms after its frame arrived at p50, {age['p95']:.0f} ms "
                         f"at p95, {age['max']:.0f} ms at most")
    for skip in data.get("skipped", []):
        where = f" at {skip['size']}" if "size" in skip else ""
        what = f" {skip['mode']}" if "mode" in skip else ""
        lines.append(f"- skipped `{skip['backend']}`{what}{where}: {skip['reason']}")
    ref = data.get("hardware_reference", {})
    if ref.get("status") == "measured":
        lines += ["", f"Hardware reference: PyTorch {ref['torch']} {ref['precision']} CUDA graph on {ref['device']} "
                      f"({ref['what']}):", "", "| size | input | ms p50 / p95 / p99 | FPS | p50 / bare p50 |",
                  "|---|---|---|---|---|"]
        for size, st in ref["sizes"].items():
            ratios = ", ".join(f"{k} {v:.2f}x" for k, v in st.get("ratio_to_bare_p50", {}).items())
            lines.append(f"| {size} | {st['input_hw'][0]}x{st['input_hw'][1]} | {st['p50']:.2f} / {st['p95']:.2f} / "
                         f"{st['p99']:.2f} | {fps(st['mean']):.0f} | {ratios or '-'} |")
    elif ref:
        lines.append(f"- hardware reference (PyTorch fp16 CUDA graph) skipped: {ref.get('reason')}")
    lines.append("")
    for plot, caption in ((HIST_PLOT, "end-to-end latency per mode"), (STAGE_PLOT, "per-stage p50 per size")):
        if (folder / plot).exists():
            lines += [f"![{folder.name} {caption}](results/{folder.name}/{plot})", ""]
    return "\n".join(lines)


def plot_histograms(data: Mapping[str, Any], path: Path) -> None:
    """End-to-end latency histogram per mode at the default size (one panel per backend), p50 lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in data["results"] if e["size"] == data["default_size"]] or data["results"][:1]
    fig, axes = plt.subplots(len(entries), 1, figsize=(8, 3.2 * len(entries)), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, entry in zip(axes[:, 0], entries):
        summaries = {"bare": entry["bare"], **entry["modes"]}
        everything = np.concatenate([s["e2e_samples_ms"] for s in summaries.values()])
        bins = np.linspace(everything.min(), everything.max(), 40) if everything.max() > everything.min() else 10
        for i, (mode, summary) in enumerate(summaries.items()):
            colour = colours[i % len(colours)]
            p50 = summary["stages"]["e2e"]["p50"]
            ax.hist(summary["e2e_samples_ms"], bins=bins, alpha=0.45, color=colour, label=f"{mode} (p50 {p50:.1f} ms)")
            ax.axvline(p50, color=colour, linestyle="--", linewidth=1.2)
        hw = entry["input_hw"][0]
        ax.set_title(f"{entry['backend']}, short side {entry['size']} (input {hw[0]}x{hw[1]})")
        ax.set_xlabel("end-to-end ms per frame")
        ax.set_ylabel("frames")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_stages(data: Mapping[str, Any], path: Path) -> None:
    """Stacked per-stage p50 per size (in-process path, else the first mode measured), bare p50 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = list(dict.fromkeys(e["backend"] for e in data["results"]))
    fig, axes = plt.subplots(1, len(backends), figsize=(4 + 2.2 * len(data["settings"]["sizes"]) * len(backends), 4),
                             squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, backend in zip(axes[0], backends):
        entries = [e for e in data["results"] if e["backend"] == backend]
        labels = [str(e["size"]) for e in entries]
        x = np.arange(len(entries))
        bottom = np.zeros(len(entries))
        mode_names = []
        for e in entries:
            mode = next((m for m in ("inprocess", "heatmap", "stream", "unary") if m in e["modes"]), "bare")
            mode_names.append(mode)
        for i, stage in enumerate(TABLE_STAGES):
            heights = np.array([({"bare": e["bare"], **e["modes"]}[m]["stages"].get(stage) or {}).get("p50", 0.0)
                                for e, m in zip(entries, mode_names)])
            if not heights.any():
                continue
            ax.bar(x, heights, bottom=bottom, color=colours[i % len(colours)], label=stage, width=0.6)
            bottom += heights
        bare = [e["bare"]["stages"]["inference"]["p50"] for e in entries]
        ax.scatter(x, bare, marker="_", s=900, color="black", zorder=3, label="bare inference p50")
        ax.set_xticks(x, [f"{label}\n({m})" for label, m in zip(labels, mode_names)])
        ax.set_xlabel("recognition short side")
        ax.set_ylabel("p50 ms")
        ax.set_title(backend)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

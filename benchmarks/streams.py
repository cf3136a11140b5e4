"""``muselens bench streams``: N simulated cameras against one server, as buyers run it.

The server is ``muselens serve`` in its own process (its GIL is not the load generator's), or
an already running one (``--server``). Each camera is a thread with its own connection and
``StreamRecognize`` call, sending frames at a fixed rate whether answers come or not (open loop),
so when the server cannot keep up, latest-frame-wins drops happen as they would with a real
camera. Per run of N cameras: achieved FPS per stream and in total, end-to-end latency (frame
sent -> its answer, matched by ``frame_id``) p50/p99, dropped frames (the server's
``dropped_frames`` count and the frames of the measured window never answered), the per-stage
timings the server reports, server CPU from ``/proc/<pid>/stat`` and GPU utilisation from
``nvidia-smi`` when there is one. Several N give a curve: achieved FPS and p99 against N.

The targets (reported by :func:`markdown`, never asserted): on 2 CPU cores, streaming p50 within
1.15x of bare ONNX Runtime inference and >= 25 FPS at the default size; on an H100, >= 64
concurrent 30-FPS streams with p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muselens.benchmarks import common
from muselens.benchmarks.load import STAGES, csv_ints, load_frames, recognition_timings, summarise
from muselens.runtime.server.process import ServerProcess

CURVE_PLOT = "streams_curve.png"
SERVER_WAIT_S = 30.0  # for a running server (--server) to accept a connection
SERVER_START_S = 120.0  # for the server started here to print its banner
SUSTAINED = 0.95  # a run keeps up when it answers at least this share of the frames offered
CPU_LATENCY_RATIO = 1.15
CPU_FPS = 25.0
GPU_STREAMS, GPU_FPS, GPU_P99_MS = 64, 30.0, 50.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from muselens.runtime.engine import BACKENDS, DEFAULT_BACKEND

    parser.add_argument("bundle", type=Path, nargs="?", default=None,
                        help="bundle to serve (with --server: optional, used only for the bare-inference baseline)")
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json and the plot")
    parser.add_argument("--streams", type=csv_ints, default=[1],
                        help="concurrent cameras; a comma-separated list gives a curve (default: 1)")
    parser.add_argument("--fps", type=float, default=30.0,
                        help="frames per second each camera sends (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="measured seconds per N, after the warm-up (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds each run streams before measuring (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="the server's inference threads (default: backend's)")
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                        help="the served backend (default: %(default)s)")
    parser.add_argument("--variant", default=None, help="model variant to serve (default: the bundle's default)")
    parser.add_argument("--workers", type=int, default=None,
                        help="the server's concurrent calls (default: the largest N + 8, at least 16; "
                             "every open stream holds one)")
    parser.add_argument("--inference-slots", type=int, default=None,
                        help="the server's inferences in flight at once (default: the backend's; see muselens serve)")
    parser.add_argument("--server", default=None, metavar="ADDR",
                        help="measure a running server at host:port instead of starting one")
    parser.add_argument("--token-file", type=Path, default=None, help="token file for --server ('client <token>')")
    parser.add_argument("--data", type=Path, default=None,
                        help="a museum dataset whose query photos are the frames (default: synthetic camera frames)")
    parser.add_argument("--frames", type=int, default=32,
                        help="distinct frames the cameras cycle through (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the frames and the cameras' phases")


# -- utilisation ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (``/proc/<pid>/stat`` utime + stime)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rpartition(")")[2].split()  # after "pid (comm)": state is fields[0], utime [11], stime [12]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GpuSampler:
    """GPU utilisation and memory from ``nvidia-smi`` every ``interval`` seconds, on a thread."""

    QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.available = shutil.which("nvidia-smi") is not None
        self.samples: list[tuple[float, float]] = []  # (util %, memory MiB), summed over GPUs for memory
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="muselens-gpu-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(self.QUERY, capture_output=True, text=True, timeout=5, check=True).stdout
                rows = [[float(v) for v in line.split(",")] for line in out.splitlines() if line.strip()]
                self.samples.append((max(r[0] for r in rows), sum(r[1] for r in rows)))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
                self.error = f"nvidia-smi failed: {exc}"
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def result(self) -> dict[str, Any]:
        if not self.available:
            return {"unavailable": "nvidia-smi not found on this machine"}
        if not self.samples:
            return {"unavailable": self.error or "nvidia-smi gave no samples"}
        util = [s[0] for s in self.samples]
        memory = [s[1] for s in self.samples]
        return {"util_percent_mean": sum(util) / len(util), "util_percent_max": max(util),
                "memory_used_mib_max": max(memory), "samples": len(util),
                **({"error": self.error} if self.error else {})}


# -- the cameras ----------------------------------------------------------------------------


@dataclass
class Camera:
    """What one simulated camera sent and got back."""

    index: int
    sent: int = 0
    sent_measured: int = 0
    answered: int = 0
    answered_measured: int = 0
    server_dropped: int = 0
    errors: int = 0
    reconnects: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    stages_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    first_error: str | None = None  # a frame the server answered with an error
    failure: str | None = None  # the stream itself failed (connection lost for good, server gone)


def run_camera(camera: Camera, address: str, token: str | None, frames: Sequence[bytes], *, rate: float,
               start: float, phase: float, warmup: float, duration: float, stop: threading.Event) -> None:
    """Stream ``frames`` at ``rate`` fps from ``start + phase`` for ``warmup + duration`` seconds, open loop;
    frames scheduled after ``start + warmup`` are measured."""
    from muselens.runtime.client.client import MuselensClient
    from muselens.v1 import recognition_pb2 as pb

    sent_at: dict[str, tuple[float, bool]] = {}
    end = start + warmup + duration

    def requests():
        i = 0
        while not stop.is_set():
            scheduled = start + phase + i / rate
            if scheduled >= end:
                return
            delay = scheduled - time.perf_counter()
            if delay > 0 and stop.wait(delay):
                return
            frame_id = f"{camera.index}-{i}"
            message = pb.Frame(frame_id=frame_id, timestamp=scheduled - start,
                               image=pb.Image(encoded=frames[(i + camera.index) % len(frames)]))
            measured = scheduled >= start + warmup
            sent_at[frame_id] = (time.perf_counter(), measured)
            camera.sent += 1
            camera.sent_measured += measured
            i += 1
            yield message

    client = MuselensClient(address, token=token)
    stop_watch = threading.Thread(target=lambda: (stop.wait(), client.close()), daemon=True)
    stop_watch.start()
    try:
        for recognition in client.stream(requests()):
            now = time.perf_counter()
            camera.answered += 1
            camera.server_dropped = max(camera.server_dropped, int(recognition.dropped_frames))
            sent, measured = sent_at[recognition.frame_id]
            if recognition.HasField("error"):
                camera.errors += 1
                camera.first_error = camera.first_error or f"{recognition.error.reason}: {recognition.error.message}"
                continue
            if measured:
                camera.answered_measured += 1
                camera.latencies_ms.append((now - sent) * 1e3)
                for stage, value in recognition_timings(recognition).items():
                    camera.stages_ms[stage].append(value)
    except Exception as exc:  # noqa: BLE001 -- recorded and reported: a failed camera must not hang the run
        camera.failure = f"{type(exc).__name__}: {exc}"
    finally:
        camera.reconnects = client.reconnects
        client.close()


def run_streams(address: str, token: str | None, frames: Sequence[bytes], n: int, *, rate: float, warmup: float,
                duration: float, seed: int, server_pid: int | None) -> dict[str, Any]:
    """N cameras for ``warmup + duration`` seconds; the run's numbers."""
    rng = random.Random(seed * 1000 + n)
    cameras = [Camera(i) for i in range(n)]
    stop = threading.Event()
    start = time.perf_counter() + 0.2  # every thread created before the first frame
    threads = [threading.Thread(target=run_camera, args=(c, address, token, frames),
                                kwargs=dict(rate=rate, start=start, phase=rng.uniform(0, 1 / rate), warmup=warmup,
                                            duration=duration, stop=stop), name=f"camera-{c.index}", daemon=True)
               for c in cameras]
    with GpuSampler() as gpu:
        for t in threads:
            t.start()
        wait = start + warmup - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        cpu0, wall0 = (cpu_seconds(server_pid) if server_pid else None), time.perf_counter()
        time.sleep(max(0.0, start + warmup + duration - time.perf_counter()))
        cpu1, wall1 = (cpu_seconds(server_pid) if server_pid else None), time.perf_counter()
        deadline = time.monotonic() + 60.0
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        hung = [t.name for t in threads if t.is_alive()]
        stop.set()  # closes the channels of cameras still waiting (and ends every camera's watcher)
        for t in threads:
            t.join(10)
    if cpu0 is not None and cpu1 is not None:
        used = (cpu1 - cpu0) / (wall1 - wall0)
        cpu = {"percent_of_one_core": 100 * used, "percent_of_all_cores": 100 * used / (os.cpu_count() or 1)}
    else:
        cpu = {"unavailable": "the server runs elsewhere (--server): its process is not visible here"}
    latencies = [v for c in cameras for v in c.latencies_ms]
    stages = {s: [v for c in cameras for v in c.stages_ms[s]] for s in STAGES if s != "heatmap"}
    per_stream = [{"stream": c.index, "sent": c.sent, "answered": c.answered, "server_dropped": c.server_dropped,
                   "sent_measured": c.sent_measured, "answered_measured": c.answered_measured,
                   "unanswered_measured": c.sent_measured - c.answered_measured,
                   "achieved_fps": c.answered_measured / duration, "errors": c.errors, "reconnects": c.reconnects,
                   **({"first_error": c.first_error} if c.first_error else {}),
                   **({"failure": c.failure} if c.failure else {})} for c in cameras]
    sent = sum(c.sent_measured for c in cameras)
    answered = sum(c.answered_measured for c in cameras)
    return {"streams": n, "offered_fps_per_stream": rate, "offered_fps_total": rate * n,
            "achieved_fps_total": answered / duration,
            "achieved_fps_per_stream": {"min": min(p["achieved_fps"] for p in per_stream),
                                        "mean": answered / duration / n,
                                        "max": max(p["achieved_fps"] for p in per_stream)},
            "sent_measured": sent, "answered_measured": answered,
            "unanswered_measured": sent - answered, "drop_rate": (sent - answered) / sent if sent else 0.0,
            "server_dropped_total": sum(c.server_dropped for c in cameras),
            "errors": sum(c.errors for c in cameras),
            "failures": [f"stream {c.index}: {c.failure}" for c in cameras if c.failure],
            "latency_ms": common.percentiles(latencies),
            "stages_ms": summarise(stages, None), "server_cpu": cpu, "gpu": gpu.result(),
            "hung_streams": hung, "per_stream": per_stream}


# -- the command ----------------------------------------------------------------------------


def _check_args(args: argparse.Namespace) -> None:
    if args.bundle is None and args.server is None:
        raise ValueError("give a BUNDLE to serve, or --server ADDR of a running server")
    if args.token_file is not None and args.server is None:
        raise ValueError("--token-file is for --server; the server started here has no tokens")
    for name in ("fps", "duration"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name} must be > 0, got {getattr(args, name)}")
    if not args.warmup >= 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    for name in ("threads", "workers", "inference_slots"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.inference_slots is not None and args.server is not None:
        raise ValueError("--inference-slots configures the server started here, not a running one (--server)")


def bare_baseline(bundle: Path, frames: Sequence[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """Bare inference at the served size on these frames, measured here before the server starts
    (so nothing competes with it); the yardstick of the CPU latency target."""
    from muselens.benchmarks.latency import measure_bare
    from muselens.runtime.engine import BackendUnavailable
    from muselens.runtime.frames import decode_encoded
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig

    try:
        model = ServedModel.load(bundle, ServingConfig(backend=args.backend, variant=args.variant,
                                                       threads=args.threads))
    except BackendUnavailable as exc:
        return {"unavailable": str(exc)}
    try:
        resized = [model.describer.resize(decode_encoded(f)) for f in frames]
        values = measure_bare(model.describer, [resized[i % len(resized)] for i in range(30)], warmup=3)
        return {"backend": args.backend, "short_side": model.describer.short_side,
                "input_hw": [list(hw) for hw in sorted({tuple(r.shape[:2]) for r in resized})],
                "where": "on this machine" + (" (the client's, not --server's)" if args.server else ""),
                **common.percentiles(values["inference"])}
    finally:
        model.close()


def _bundle_info(address: str, token: str | None) -> Any:
    """What the server serves, or a RuntimeError saying why it cannot be asked."""
    import grpc

    from muselens.runtime.client.client import MuselensClient

    with MuselensClient(address, token=token) as client:
        try:
            client.wait_ready(SERVER_WAIT_S)
            return client.bundle_info()
        except grpc.FutureTimeoutError:
            raise RuntimeError(f"no server answered at {address} within {SERVER_WAIT_S:g} s") from None
        except grpc.RpcError as exc:
            raise RuntimeError(f"the server at {address} refused GetBundleInfo: {exc.code().name}: "
                               f"{exc.details()}") from None


def server_process(args: argparse.Namespace, workers: int) -> ServerProcess:
    """``muselens serve`` for this run: the backend, variant and thread count asked for, and one
    worker per camera plus headroom (every open stream holds one)."""
    extra = ["--backend", args.backend, "--workers", str(workers)]
    if args.variant is not None:
        extra += ["--variant", args.variant]
    if args.inference_slots is not None:
        extra += ["--inference-slots", str(args.inference_slots)]
    return ServerProcess(args.bundle, threads=args.threads, extra=tuple(extra))


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from muselens.runtime.client.client import read_token

    _check_args(args)
    frames, source = load_frames(args.data, args.frames, seed=args.seed)
    bare = bare_baseline(args.bundle, frames, args) if args.bundle is not None else \
        {"unavailable": "no BUNDLE given with --server"}
    token = read_token(args.token_file) if args.token_file else None
    runs = []
    server_record: dict[str, Any] = {}
    serve: ServerProcess | None = None
    try:
        if args.server is None:
            workers = args.workers or max(16, max(args.streams) + 8)
            serve = server_process(args, workers)
            command = "muselens " + " ".join(serve.command()[3:])
            print(f"streams: starting {command}", file=sys.stderr, flush=True)
            serve.start(timeout=SERVER_START_S)
            address = serve.address
            server_record.update(started_here=True, command=command, banner=serve.banner, workers=workers)
        else:
            address = args.server
            server_record.update(started_here=False, address=address)
        info = _bundle_info(address, token)
        server_record["bundle"] = {"name": info.name, "bundle_version": info.bundle_version,
                                   "backbone": info.backbone, "variant": info.variant, "backend": info.backend}
        for n in args.streams:
            print(f"streams: {n} camera(s) at {args.fps:g} fps for {args.warmup:g} + {args.duration:g} s",
                  file=sys.stderr, flush=True)
            run = run_streams(address, token, frames, n, rate=args.fps, warmup=args.warmup, duration=args.duration,
                              seed=args.seed, server_pid=serve.pid if serve else None)
            runs.append(run)
            for failure in run["failures"]:
                print(f"streams: {n} camera(s): {failure}", file=sys.stderr, flush=True)
            if serve is not None and serve.process is not None and serve.process.poll() is not None:
                raise RuntimeError(f"the server exited (status {serve.process.returncode}) during the run with "
                                   f"{n} streams; its log ends: {serve.log_tail()}")
    finally:
        if serve is not None:
            code = serve.stop()
            serve.close_log()
            server_record["shutdown"] = {"stopped": serve.stopped_by, "exit_code": code}
            print(f"streams: server stopped ({server_record['shutdown']})", file=sys.stderr, flush=True)
    return {"server": server_record,
            "settings": {"streams": list(args.streams), "fps": args.fps, "duration_s": args.duration,
                         "warmup_s": args.warmup, "threads": args.threads, "backend": args.backend,
                         "inference_slots": args.inference_slots,
                         "frame_source": source},
            "bare": bare, "runs": runs}


def main(args: argparse.Namespace) -> int:
    try:
        payload = run_benchmark(args)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = common.write_bench(args.out, "streams", getattr(args, "argv", None), payload)
    plot_curve(payload, args.out / CURVE_PLOT)
    print("\n".join(table(payload)))
    print()
    data = json.loads(path.read_text())
    for target in evaluate_targets(data, find_latency(args.out.parent, data)):
        print(f"{target['verdict']}: {target['target']}; measured: {target['measured']} [source: {target['source']}]")
    print(f"wrote {path}")
    return 0


# -- targets --------------------------------------------------------------------------------


def find_latency(results: Path, data: Mapping[str, Any]) -> tuple[str, dict] | None:
    """The newest latency bench.json beside this run, preferring the same bundle, then one that measured
    the bundle's own size on ort-cpu (what the CPU targets compare)."""
    name = data.get("server", {}).get("bundle", {}).get("name")
    found = []
    for path in sorted(results.glob("*/bench.json")):
        try:
            other = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if other.get("benchmark") == "latency":
            same = other.get("bundle", {}).get("name") == name
            usable = _latency_entry(other) is not None
            found.append((same, usable, other.get("environment", {}).get("created", ""), path.parent.name, other))
    if not found:
        return None
    found.sort(key=lambda f: f[:3])
    return found[-1][3], found[-1][4]


def _latency_entry(latency: Mapping[str, Any], backend: str = "ort-cpu") -> dict | None:
    """The latency bench's result at the bundle's own short side (the size a server serves) on ``backend``."""
    size = latency.get("bundle", {}).get("short_side")
    return next((e for e in latency.get("results", []) if e["size"] == size and e["backend"] == backend), None)


def _breakdown(stages: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    return [{"stage": s, "p50": v["p50"], "p99": v["p99"]} for s, v in stages.items() if v.get("count")]


def evaluate_targets(data: Mapping[str, Any], latency: tuple[str, dict] | None) -> list[dict[str, Any]]:
    """Each target with its measured value, MET/MISSED, where the number came from, whether this
    machine is the one the target is for, and -- when missed -- the per-stage breakdown."""
    env = data.get("environment", {})
    gpus = env.get("gpus") or []
    on_cpu2 = env.get("cpus") == 2 and not gpus
    on_h100 = any("H100" in g for g in gpus)
    runs = data.get("runs", [])
    bare = data.get("bare", {})
    entry = _latency_entry(latency[1]) if latency else None
    targets = []

    # 1. CPU: streaming e2e p50 within 1.15x of bare ORT inference at the same size.
    t: dict[str, Any] = {"target": f"2 CPU cores: streaming end-to-end p50 <= {CPU_LATENCY_RATIO}x bare ONNX Runtime "
                                   "inference at the same size", "this_machine": on_cpu2}
    if entry and "stream" in entry["modes"]:
        stream = entry["modes"]["stream"]["stages"]
        ratio = stream["e2e"]["p50"] / entry["bare"]["stages"]["inference"]["p50"]
        t.update(value=ratio, measured=f"{ratio:.2f}x ({stream['e2e']['p50']:.1f} ms vs "
                                       f"{entry['bare']['stages']['inference']['p50']:.1f} ms)",
                 source=f"latency bench {latency[0]}, closed-loop stream at short side {entry['size']}",
                 breakdown=_breakdown({k: v for k, v in stream.items() if k != "e2e"}))
    else:
        one = next((r for r in runs if r["streams"] == 1 and r["latency_ms"].get("count")), None)
        if one and bare.get("count"):
            ratio = one["latency_ms"]["p50"] / bare["p50"]
            t.update(value=ratio, measured=f"{ratio:.2f}x ({one['latency_ms']['p50']:.1f} ms vs {bare['p50']:.1f} ms)",
                     source=f"this run, 1 stream at {one['offered_fps_per_stream']:g} fps (open loop)",
                     breakdown=_breakdown(one["stages_ms"]))
        else:
            t.update(value=None, measured="not measured (needs a 1-stream run and a bare baseline, or a latency "
                                          "bench beside this one)", source="-")
    t["verdict"] = "MET" if t["value"] is not None and t["value"] <= CPU_LATENCY_RATIO else "MISSED"
    targets.append(t)

    # 2. CPU: >= 25 FPS at the default size.
    t = {"target": f"2 CPU cores: >= {CPU_FPS:g} FPS at the default size", "this_machine": on_cpu2}
    if entry and "stream" in entry["modes"]:
        value = entry["modes"]["stream"]["fps"]
        t.update(value=value, measured=f"{value:.1f} FPS",
                 source=f"latency bench {latency[0]}, closed-loop stream at short side {entry['size']}",
                 breakdown=_breakdown({k: v for k, v in entry["modes"]["stream"]["stages"].items() if k != "e2e"}))
    elif runs:
        best = max(runs, key=lambda r: r["achieved_fps_total"])
        value = best["achieved_fps_total"]
        t.update(value=value, measured=f"{value:.1f} FPS total with {best['streams']} stream(s) "
                                       f"(offered {best['offered_fps_total']:g})",
                 source="this run, best N", breakdown=_breakdown(best["stages_ms"]))
    else:
        t.update(value=None, measured="not measured", source="-")
    t["verdict"] = "MET" if t["value"] is not None and t["value"] >= CPU_FPS else "MISSED"
    targets.append(t)

    # 3. H100: >= 64 concurrent 30-FPS streams with p99 < 50 ms.
    t = {"target": f"H100: >= {GPU_STREAMS} concurrent {GPU_FPS:g}-FPS streams with p99 < {GPU_P99_MS:g} ms",
         "this_machine": on_h100}
    at_rate = [r for r in runs if r["offered_fps_per_stream"] >= GPU_FPS]
    good = [r for r in at_rate if r["achieved_fps_total"] >= SUSTAINED * r["offered_fps_total"]
            and r["latency_ms"].get("count") and r["latency_ms"]["p99"] < GPU_P99_MS]
    if not at_rate:
        t.update(value=None, measured=f"not measured at >= {GPU_FPS:g} fps per stream", source="-")
    else:
        best = max(good, key=lambda r: r["streams"]) if good else None
        worst = max(at_rate, key=lambda r: r["streams"])
        t.update(value=best["streams"] if best else 0,
                 measured=(f"{best['streams']} streams sustained (p99 {best['latency_ms']['p99']:.1f} ms)" if best
                           else "no N sustained") + f"; tried N up to {worst['streams']}",
                 source=f"this run (sustained = >= {SUSTAINED:.0%} of offered frames answered)",
                 breakdown=_breakdown(worst["stages_ms"]))
    t["verdict"] = "MET" if t["value"] is not None and t["value"] >= GPU_STREAMS else "MISSED"
    targets.append(t)
    return targets


# -- reporting ------------------------------------------------------------------------------


def _cpu(run: Mapping[str, Any]) -> str:
    c = run["server_cpu"]
    return "n/a" if "unavailable" in c else f"{c['percent_of_one_core']:.0f}% ({c['percent_of_all_cores']:.0f}% of all)"


def _gpu(run: Mapping[str, Any]) -> str:
    g = run["gpu"]
    return "n/a" if "unavailable" in g else f"{g['util_percent_mean']:.0f}% (max {g['util_percent_max']:.0f}%)"


def table(data: Mapping[str, Any]) -> list[str]:
    rows = ["| streams | offered FPS | achieved FPS total | per stream min / mean | e2e ms p50 / p99 | "
            "unanswered (rate) | server-dropped | errors / failed streams | server CPU (of one core) | GPU util |",
            "|" + "---|" * 10]
    for r in data["runs"]:
        lat = r["latency_ms"]
        latency = f"{lat['p50']:.1f} / {lat['p99']:.1f}" if lat.get("count") else "-"
        per = r["achieved_fps_per_stream"]
        rows.append(f"| {r['streams']} | {r['offered_fps_total']:g} | {r['achieved_fps_total']:.1f} | "
                    f"{per['min']:.1f} / {per['mean']:.1f} | {latency} | {r['unanswered_measured']} "
                    f"({r['drop_rate']:.0%}) | {r['server_dropped_total']} | {r['errors']} / {len(r['failures'])} | "
                    f"{_cpu(r)} | {_gpu(r)} |")
    return rows


def stage_table(data: Mapping[str, Any]) -> list[str]:
    """Per N, the server-reported stage p50 / p99 (ms) of the measured answers."""
    stages = [s for s in STAGES if s != "heatmap"]
    rows = ["| streams | " + " | ".join(stages) + " |", "|" + "---|" * (len(stages) + 1)]
    for r in data["runs"]:
        cells = [f"{r['stages_ms'][s]['p50']:.1f} / {r['stages_ms'][s]['p99']:.1f}"
                 if r["stages_ms"].get(s, {}).get("count") else "-" for s in stages]
        rows.append(f"| {r['streams']} | " + " | ".join(cells) + " |")
    return rows


def markdown(folder: Path, data: dict) -> str:
    s, server = data["settings"], data["server"]
    b = server.get("bundle", {})
    where = f"server `{server['command']}`" if server.get("started_here") else f"server at {server.get('address')}"
    bare = data.get("bare", {})
    bare_line = (f"Bare {bare['backend']} inference at short side {bare['short_side']} "
                 f"({', '.join(f'{h}x{w}' for h, w in bare['input_hw'])}), measured {bare['where']} before the run: "
                 f"p50 {bare['p50']:.1f} ms, p99 {bare['p99']:.1f} ms." if bare.get("count")
                 else f"Bare inference: {bare.get('unavailable', 'not measured')}.")
    lines = [f"## {folder.name}", "", f"`{data['command']}`", "", common.machine_line(data["environment"]) + ".", "",
             f"Bundle `{b.get('name')}` {b.get('bundle_version')} ({b.get('backbone')}, {b.get('variant')}, "
             f"{b.get('backend')}); {where}. Each camera: its own connection and stream, {s['fps']:g} fps open loop, "
             f"{s['warmup_s']:g} s warm-up then {s['duration_s']:g} s measured; frames: {s['frame_source']}.", "",
             bare_line, "", *table(data), "",
             "Unanswered = frames sent in the measured window that got no answer (latest frame wins dropped "
             "them); server-dropped = the server's `dropped_frames` count over the whole run.", "",
             "Server stage timings, p50 / p99 ms:", "", *stage_table(data), ""]
    failures = [f"- {r['streams']} streams: {f}" for r in data["runs"] for f in r["failures"]]
    if failures:
        lines += ["Streams that failed:", "", *failures, ""]
    if (folder / CURVE_PLOT).exists():
        lines += [f"![{folder.name} achieved FPS and p99 against streams](results/{folder.name}/{CURVE_PLOT})", ""]
    latency = find_latency(folder.parent, data)
    lines += ["### Targets", ""]
    for t in evaluate_targets(data, latency):
        note = "" if t["this_machine"] else " (this machine is not the one the target is for)"
        lines.append(f"- **{t['verdict']}**{note}: {t['target']}. Measured: {t['measured']}; source: {t['source']}.")
        if t["verdict"] == "MISSED" and t.get("breakdown"):
            lines += ["", "  | stage | p50 ms | p99 ms |", "  |---|---|---|"]
            lines += [f"  | {row['stage']} | {row['p50']:.1f} | {row['p99']:.1f} |" for row in t["breakdown"]]
            lines.append("")
    lines.append("")
    return "\n".join(lines)


def plot_curve(data: Mapping[str, Any], path: Path) -> None:
    """Achieved total FPS (and the offered load) and e2e p50/p99 against the number of streams."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["runs"]
    n = [r["streams"] for r in runs]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(n, [r["achieved_fps_total"] for r in runs], "o-", color="tab:blue", label="achieved FPS (total)")
    ax.plot(n, [r["offered_fps_total"] for r in runs], "--", color="tab:blue", alpha=0.5, label="offered FPS")
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("frames per second", color="tab:blue")
    if len(n) > 1 and max(n) / min(n) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(n, [str(v) for v in n])
    right = ax.twinx()
    p99 = [r["latency_ms"].get("p99", float("nan")) for r in runs]
    p50 = [r["latency_ms"].get("p50", float("nan")) for r in runs]
    right.plot(n, p99, "s-", color="tab:red", label="e2e p99")
    right.plot(n, p50, "^:", color="tab:red", alpha=0.6, label="e2e p50")
    right.set_ylabel("end-to-end ms", color="tab:red")
    right.set_ylim(bottom=0)
    ax.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8, loc="upper left")
    ax.set_title(f"{data['settings']['fps']:g} fps per stream")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

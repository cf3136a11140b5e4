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

The cameras are :mod:`~muselens.benchmarks.stream_cameras`; the targets, and whether a run met
them, are reported by :mod:`~muselens.benchmarks.streams_report` (never asserted).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from muselens.benchmarks import common
from muselens.benchmarks.load import csv_ints, load_frames
from muselens.benchmarks.stream_cameras import run_streams
from muselens.benchmarks.streams_report import CURVE_PLOT, evaluate_targets, find_latency, markdown, plot_curve, table
from muselens.runtime.server.process import ServerProcess

# A bench kind's interface (benchmarks/bench_command.py); markdown is streams_report's.
__all__ = ["add_arguments", "main", "markdown"]

SERVER_WAIT_S = 30.0  # for a running server (--server) to accept a connection
SERVER_START_S = 120.0  # for the server started here to print its banner
# The serving path before issue 22: one frame after another, each decoded in full, verification
# as often as the streams ask, no regional candidates, one inference at a time over every core,
# the bundle's default variant.
BASELINE_SERVE_ARGS = ("--pipeline", "off", "--reduced-decode", "off", "--verify-share", "1", "--regional", "0",
                       "--inference-slots", "1")


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
    parser.add_argument("--variant", default="auto",
                        help="model variant to serve, as muselens serve's --variant (default: auto, what serve "
                             "chooses)")
    parser.add_argument("--short-side", type=int, default=None,
                        help="recognise at this short side instead of the bundle's, as muselens serve's "
                             "--short-side (the bare baseline is measured at the same size)")
    parser.add_argument("--baseline", action="store_true",
                        help="also measure the same cameras against the server as it was before issue 22 "
                             "(" + " ".join(BASELINE_SERVE_ARGS) + ", the bundle's default variant): the speed-ups "
                             "are printed against it")
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
    for name in ("threads", "workers", "inference_slots", "short_side"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("inference_slots", "short_side"):
        if getattr(args, name) is not None and args.server is not None:
            raise ValueError(f"--{name.replace('_', '-')} configures the server started here, not a running one "
                             f"(--server)")
    if args.baseline and args.server is not None:
        raise ValueError("--baseline starts a second server here; it cannot be used with --server")


def bare_baseline(bundle: Path, frames: Sequence[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """Bare inference at the served size on these frames, measured here before the server starts
    (so nothing competes with it); the yardstick of the CPU latency target."""
    from muselens.benchmarks.latency import measure_bare
    from muselens.runtime.engine import BackendUnavailable
    from muselens.runtime.frames import decode_encoded
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig

    try:
        model = ServedModel.load(bundle, ServingConfig(backend=args.backend,
                                                       variant=None if args.variant == "default" else args.variant,
                                                       threads=args.threads, short_side=args.short_side))
    except BackendUnavailable as exc:
        return {"unavailable": str(exc)}
    try:
        resized = [model.describer.resize(decode_encoded(f)) for f in frames]
        values = measure_bare(model.describer, [resized[i % len(resized)] for i in range(30)], warmup=3)
        return {"backend": args.backend, "variant": model.variant, "short_side": model.describer.short_side,
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




def server_process(args: argparse.Namespace, workers: int, baseline: bool = False) -> ServerProcess:
    """``muselens serve`` for this run: the backend, variant and thread count asked for, and one
    worker per camera plus headroom (every open stream holds one); as it was before pipelining
    and reduced decoding when ``baseline``. Its stream cap is raised to every camera of the run: the
    default (three quarters of the workers) would refuse the cameras beyond it."""
    extra = ["--backend", args.backend, "--workers", str(workers),
             "--max-streams", str(min(workers, max(args.streams)))]
    if baseline:
        extra += [*BASELINE_SERVE_ARGS, "--variant", "default"]
    elif args.variant is not None:
        extra += ["--variant", args.variant]
    if args.inference_slots is not None and not baseline:
        extra += ["--inference-slots", str(args.inference_slots)]
    if args.short_side is not None:
        extra += ["--short-side", str(args.short_side)]
    return ServerProcess(args.bundle, threads=args.threads, extra=tuple(extra))


def _measure_server(args: argparse.Namespace, frames: Sequence[bytes], token: str | None,
                    baseline: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every N of cameras against one server (started here unless ``--server``): its record and runs."""
    runs: list[dict[str, Any]] = []
    record: dict[str, Any] = {}
    serve: ServerProcess | None = None
    label = "baseline " if baseline else ""
    try:
        if args.server is None:
            workers = args.workers or max(16, max(args.streams) + 8)
            serve = server_process(args, workers, baseline)
            command = "muselens " + " ".join(serve.command()[3:])
            print(f"streams: starting {label}{command}", file=sys.stderr, flush=True)
            serve.start(timeout=SERVER_START_S)
            address = serve.address
            record.update(started_here=True, command=command, banner=serve.banner, workers=workers)
        else:
            address = args.server
            record.update(started_here=False, address=address)
        info = _bundle_info(address, token)
        record["bundle"] = {"name": info.name, "bundle_version": info.bundle_version,
                            "backbone": info.backbone, "variant": info.variant, "backend": info.backend,
                            "variant_choice": info.variant_choice}
        for n in args.streams:
            print(f"streams: {label}{n} camera(s) at {args.fps:g} fps for {args.warmup:g} + {args.duration:g} s",
                  file=sys.stderr, flush=True)
            run = run_streams(address, token, frames, n, rate=args.fps, warmup=args.warmup, duration=args.duration,
                              seed=args.seed, server_pid=serve.pid if serve else None)
            runs.append(run)
            for failure in run["failures"]:
                print(f"streams: {label}{n} camera(s): {failure}", file=sys.stderr, flush=True)
            if serve is not None and serve.process is not None and serve.process.poll() is not None:
                raise RuntimeError(f"the server exited (status {serve.process.returncode}) during the run with "
                                   f"{n} streams; its log ends: {serve.log_tail()}")
    finally:
        if serve is not None:
            code = serve.stop()
            serve.close_log()
            record["shutdown"] = {"stopped": serve.stopped_by, "exit_code": code}
            print(f"streams: {label}server stopped ({record['shutdown']})", file=sys.stderr, flush=True)
    return record, runs


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from muselens.runtime.client.client import read_token

    _check_args(args)
    frames, source = load_frames(args.data, args.frames, seed=args.seed)
    bare = bare_baseline(args.bundle, frames, args) if args.bundle is not None else \
        {"unavailable": "no BUNDLE given with --server"}
    token = read_token(args.token_file) if args.token_file else None
    server_record, runs = _measure_server(args, frames, token)
    payload = {"server": server_record,
               "settings": {"streams": list(args.streams), "fps": args.fps, "duration_s": args.duration,
                            "warmup_s": args.warmup, "threads": args.threads, "backend": args.backend,
                            "inference_slots": args.inference_slots, "short_side": args.short_side,
                            "frame_source": source},
               "bare": bare, "runs": runs}
    if args.baseline:
        record, baseline_runs = _measure_server(args, frames, token, baseline=True)
        payload["baseline"] = {"server": record, "runs": baseline_runs,
                               "what": "the server before pipelining and reduced decoding: "
                                       + " ".join(BASELINE_SERVE_ARGS) + ", the bundle's default variant"}
    return payload


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



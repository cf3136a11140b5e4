"""``muselens serve BUNDLE``: serve a museum's bundle over gRPC until SIGINT/SIGTERM.

Prints ``serving <name> <version> on <host>:<port> ...`` once listening (with ``--port 0`` the
port the OS chose; ``; admin on <host>:<port>`` with ``--admin-port``), then logs reloads and
refusals. Exit status 0 after a graceful shutdown, 2 when the bundle, the backend or the
TLS/token files cannot be used.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from muselens.runtime.bundle import BundleError
from muselens.runtime.engine import BACKENDS, DEFAULT_BACKEND, BackendUnavailable
from muselens.runtime.frames import FrameLimits
from muselens.runtime.recognition.decision_rule import DEFAULT_UNCERTAIN_MARGIN
from muselens.runtime.recognition.explainer import REFERENCE_CACHE_BYTES
from muselens.runtime.recognition.regional import DEFAULT_REGIONAL_CANDIDATES
from muselens.runtime.recognition.search import SEARCH_ENGINES
from muselens.runtime.server.penalty import DEFAULT_FLOOD_PENALTY_AFTER, DEFAULT_PENALTY_AFTER

if TYPE_CHECKING:
    from muselens.runtime.server.app import MuselensServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle folder or .tar.gz archive (from muselens export/retrain)")
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                        help="inference backend; an unavailable one is an error, never a fallback (default: %(default)s)")
    parser.add_argument("--variant", default="auto",
                        help="model variant to serve: a name, 'default' (the bundle's default variant) or 'auto' "
                             "(the default: the fastest on this machine of those within 0.5 mP@1 points of fp32 on "
                             "the bundle's queries, timed at start-up)")
    parser.add_argument("--host", default="[::]", help="address to bind (default: all interfaces)")
    parser.add_argument("--port", type=int, default=50051, help="port (0: any free port; default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: the backend's choice)")
    parser.add_argument("--workers", type=int, default=16, help="concurrent calls served (default: %(default)s)")
    parser.add_argument("--max-streams", type=int, default=None,
                        help="streams open at once, each holding a worker (default: three quarters of --workers, "
                             "the rest kept for unary calls, health and admin)")
    parser.add_argument("--max-streams-per-token", type=int, default=None,
                        help="streams one client token may hold open (default: only the server's cap)")
    parser.add_argument("--stream-idle-seconds", type=float, default=30.0,
                        help="a stream that sends no frame this long is closed (default: %(default)s)")
    parser.add_argument("--max-pending-calls", type=int, default=None,
                        help="calls running or waiting for a worker; more are refused at once with "
                             "RESOURCE_EXHAUSTED (default: twice --workers)")
    parser.add_argument("--max-calls-per-token", type=int, default=None,
                        help="unary calls one client token may have running at once; more are refused at once "
                             "with RESOURCE_EXHAUSTED, and the inference gate serves tokens in turn (default: a "
                             "quarter of --workers; clients are told apart by client tokens only)")
    parser.add_argument("--inference-slots", type=int, default=None,
                        help="inferences run at once; more calls wait their turn (default on ort-cpu: one run "
                             "over every core when nothing else is going on, one run per core beside other "
                             "work; 1 on tensorrt, 2 on ort-cuda and ort-tensorrt; a number turns the ort-cpu "
                             "choice off)")
    parser.add_argument("--reference-cache-mb", type=int, default=REFERENCE_CACHE_BYTES // 2**20,
                        help="MiB of reference photos' maps kept for reference-side heatmaps "
                             "(default: %(default)s)")
    parser.add_argument("--search", choices=SEARCH_ENGINES, default="auto", help="gallery search (default: %(default)s)")
    parser.add_argument("--uncertain-margin", type=float, default=DEFAULT_UNCERTAIN_MARGIN,
                        help="answer 'uncertain' when the runner-up is this close to the best (default: %(default)s)")
    parser.add_argument("--verify", choices=("on", "off"), default="on",
                        help="geometric verification of unary calls when a call does not say (needs a bundle "
                             "exported with local features; default: %(default)s)")
    parser.add_argument("--vote", choices=("on", "off"), default="on",
                        help="also verify the artworks the frame's local features vote for, beyond the descriptor's "
                             "shortlist (an index built at load: ~2 s per 80,000 keypoints; default: %(default)s)")
    parser.add_argument("--regional", type=int, default=DEFAULT_REGIONAL_CANDIDATES,
                        help="artworks that parts of the frame (R-MAC regions of the feature map) rank first, "
                             "verified beside the descriptor's shortlist; 0: none (default: %(default)s)")
    parser.add_argument("--verify-workers", type=int, default=1,
                        help="threads verifying streams' newest frames in the background "
                             "(0: streams are answered from descriptors only; default: %(default)s)")
    parser.add_argument("--verify-share", type=float, default=0.5,
                        help="the share of the verification threads' time spent verifying, however many streams "
                             "ask: after each verification they rest for the rest (default: %(default)s; 1: no rest)")
    parser.add_argument("--verify-interval", type=float, default=0.5,
                        help="seconds between a stream's background verifications (default: %(default)s)")
    parser.add_argument("--pipeline", choices=("on", "off"), default="on",
                        help="decode and resize a stream's next frame while its current one is inferred "
                             "(default: %(default)s; off: one frame after another, as before)")
    parser.add_argument("--short-side", type=int, default=None,
                        help="recognise at this short side instead of the bundle's (faster when smaller; "
                             "`muselens bench inference-settings --data` measures what it costs in mP@1)")
    parser.add_argument("--decode-slots", type=int, default=None,
                        help="frames decoded at once, in turn between clients (default: half the cores)")
    parser.add_argument("--reduced-decode", choices=("on", "off"), default="on",
                        help="decode a JPEG frame at the smallest n/8 scale that still holds what recognition "
                             "(and verification) need (default: %(default)s; off: every frame in full)")
    parser.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, default=None, help="PEM private key (with --tls-cert)")
    parser.add_argument("--token-file", type=Path, default=None,
                        help="'<client|admin> <token>' lines; admin calls are disabled without an admin token")
    parser.add_argument("--bundle-root", type=Path, default=None,
                        help="Admin.LoadBundle loads only bundles inside this folder (symlinks and '..' "
                             "resolved; relative paths are relative to it) and tells nothing about paths "
                             "outside it; set it on any server others can reach (default: any path the "
                             "server can read)")
    parser.add_argument("--admin-port", type=int, default=None,
                        help="serve Admin, health and reflection on this port, on --host's address, with their "
                             "own workers, so they answer however loaded the main port is; Admin is then "
                             "served there only (0: any free port; default: Admin on the main port)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus metrics on this port, on --host's address (no authentication)")
    parser.add_argument("--max-frame-bytes", type=int, default=FrameLimits().max_encoded_bytes,
                        help="largest encoded frame accepted (default: %(default)s)")
    parser.add_argument("--max-frame-pixels", type=int, default=FrameLimits().max_pixels,
                        help="largest frame accepted, in pixels, checked before decoding (default: %(default)s)")
    parser.add_argument("--allow-ort-telemetry", action="store_true",
                        help="let ONNX Runtime record its usage telemetry (device id, OS, CPU, providers) under "
                             "the user's home; off by default")
    parser.add_argument("--max-jpeg-scans", type=int, default=FrameLimits().max_jpeg_scans,
                        help="most scans a JPEG frame may have: each costs a pass over the whole image "
                             "(a camera writes 1-10; default: %(default)s)")
    parser.add_argument("--penalty-after", type=int, default=DEFAULT_PENALTY_AFTER,
                        help="a client token whose frames are refused for their cost (too many JPEG scans, "
                             "too many pixels, too large) this many times within 2 s has its calls held and "
                             "refused for 5 s, their requests unread (0: never; default: %(default)s)")
    parser.add_argument("--flood-penalty-after", type=int, default=DEFAULT_FLOOD_PENALTY_AFTER,
                        help="the same for a client token whose calls are refused this many times within 2 s "
                             "for being over its calls in flight (0: never; default: %(default)s)")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds in-flight calls get at shutdown")


def build(args: argparse.Namespace) -> MuselensServer:
    """The server for ``args``, not yet started; ValueError (and the load errors) when it cannot be.

    It returns the server and nothing else on purpose: a reference to the model loaded here,
    kept for the life of the process, would keep that model -- its session, its cache of
    reference maps, its bundle -- alive after a hot reload or an enrolment replaced it.
    """
    from muselens.runtime.recognition.holder import ModelHolder
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig
    from muselens.runtime.server.app import MuselensServer, ServerConfig
    from muselens.runtime.server.auth import Tokens

    if args.reference_cache_mb < 0:
        raise ValueError(f"--reference-cache-mb must be >= 0, got {args.reference_cache_mb}")
    tokens = Tokens.load(args.token_file) if args.token_file else None
    limits = FrameLimits(max_encoded_bytes=args.max_frame_bytes, max_pixels=args.max_frame_pixels,
                         max_jpeg_scans=args.max_jpeg_scans)
    config = ServerConfig(host=args.host, port=args.port, max_workers=args.workers, tls_cert=args.tls_cert,
                          tls_key=args.tls_key, tokens=tokens, limits=limits, grace_seconds=args.grace,
                          bundle_root=args.bundle_root, max_streams=args.max_streams,
                          max_streams_per_token=args.max_streams_per_token,
                          stream_idle_seconds=args.stream_idle_seconds, max_pending_calls=args.max_pending_calls,
                          admin_port=args.admin_port, max_calls_per_token=args.max_calls_per_token,
                          verify_workers=args.verify_workers, verify_interval_s=args.verify_interval,
                          verify_busy_share=args.verify_share,
                          pipeline=args.pipeline == "on", decode_slots=args.decode_slots,
                          penalty_after=args.penalty_after, flood_penalty_after=args.flood_penalty_after)
    for path in (args.tls_cert, args.tls_key):
        if path is not None and not path.is_file():
            raise ValueError(f"TLS file not found: {path}")
    if args.bundle_root is not None and not args.bundle_root.is_dir():
        raise ValueError(f"--bundle-root {args.bundle_root} is not a directory")
    serving = ServingConfig(backend=args.backend, variant=None if args.variant == "default" else args.variant,
                            threads=args.threads, search=args.search, short_side=args.short_side,
                            uncertain_margin=args.uncertain_margin, inference_slots=args.inference_slots,
                            reference_cache_bytes=args.reference_cache_mb * 2**20,
                            allow_ort_telemetry=args.allow_ort_telemetry, verify=args.verify == "on",
                            vote=args.vote == "on", reduced_decode=args.reduced_decode == "on",
                            regional=args.regional)
    return MuselensServer(ModelHolder(ServedModel.load(args.bundle, serving)), config)


def banner(server: MuselensServer, host: str, metrics_address: str | None) -> str:
    """The ``serving ... on HOST:PORT (...)[; admin on HOST:PORT][; metrics on HOST:PORT]`` line
    (what :class:`ServerProcess` waits for)."""
    model = server.holder.current()
    info = model.info()
    return (f"serving {info['name']} {info['bundle_version']} on {host}:{server.port} "
            f"({info['backend']}; {model.describer.gate.slots} inference slot(s); "
            f"{'TLS' if server.secure else 'plaintext'}; "
            f"{info['artworks']} artworks; search {info['search']}; verification {info['verification']})"
            + (f"; admin on {host}:{server.admin_port}" if server.admin_port is not None else "")
            + (f"; metrics on {metrics_address}" if metrics_address is not None else ""))


def main(args: argparse.Namespace) -> int:
    from muselens.runtime.server.auth import TokenFileError
    from muselens.runtime.server.malloc import HeapTrimmer, tune_malloc

    tune_malloc()  # before any worker thread exists
    if not args.allow_ort_telemetry:
        # ONNX Runtime writes its first event (device id, OS, the interpreter's path) under
        # ~/.cache/Microsoft when it is imported, before disable_telemetry_events() can be called;
        # only this variable, read at import, stops it. Set before build() imports it.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        server = build(args)
    except (BundleError, BackendUnavailable, TokenFileError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metrics_http = None
    if args.metrics_port is not None:
        try:
            metrics_http = server.metrics.serve_http(args.metrics_port, args.host)
        except (ValueError, OSError) as exc:
            print(f"error: cannot serve metrics on {args.host}:{args.metrics_port}: {exc}", file=sys.stderr)
            return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    trimmer = HeapTrimmer().start()  # freed heap pages back to the system every few seconds
    server.start()
    print(banner(server, args.host, _http_address(metrics_http) if metrics_http else None), flush=True)
    choice = server.holder.current().variant_choice
    if choice is not None:  # after the banner, which is the first line a supervisor waits for
        print(choice.summary(), flush=True)
    stop.wait()
    print("shutting down: finishing calls in flight", file=sys.stderr, flush=True)
    server.stop()
    trimmer.stop()
    if metrics_http is not None:
        metrics_http.shutdown()
    return 0


def _http_address(http) -> str:
    """``HOST:PORT`` the metrics endpoint listens on, IPv6 in brackets as ``--host`` writes it."""
    host, port = http.server_address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

"""``muselens bench reconnect BUNDLE``: how long a camera stream stays dark when its server dies.

A real ``muselens serve`` process is killed with SIGKILL mid-stream (no goodbye to the client),
left down for ``--down`` seconds (a restart's own duration), and started again on the same
port; the client library's stream reconnects with backoff. Per restart it records the resume
time (first answer after the new server printed it was ready) and the whole outage (last answer
before the kill to first answer after), as the numbers a visitor notices.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from muselens.benchmarks.common import machine_line, percentiles, write_bench

FRAME_INTERVAL_S = 0.05  # the simulated camera: 20 frames a second


def measure_restart(bundle: Path, query: bytes, down_s: float, log_dir: Path) -> dict[str, float]:
    from muselens.runtime.server.process import ServerProcess
    from muselens.runtime.client.client import Backoff, MuselensClient, frame_message

    first = ServerProcess(bundle, log=log_dir / "server.log").start()
    servers = [first]
    port = first.port
    stop = threading.Event()
    answers: list[float] = []
    events: dict[str, float] = {}
    enough = threading.Event()

    def frames():
        i = 0
        while not stop.is_set():
            yield frame_message(query, frame_id=f"{i:06d}")
            i += 1
            time.sleep(FRAME_INTERVAL_S)

    client = MuselensClient(f"127.0.0.1:{port}", backoff=Backoff(max_attempts=400), seed=0)

    def consume() -> None:
        for _ in client.stream(frames()):
            answers.append(time.monotonic())
            if len(answers) == 5:
                enough.set()
            if "ready" in events and answers[-1] > events["ready"]:
                stop.set()
                return

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    try:
        if not enough.wait(120):
            raise RuntimeError("the stream never got going")
        first.kill()
        events["killed"] = time.monotonic()
        time.sleep(down_s)
        second = ServerProcess(bundle, port=port, log=log_dir / "server.log")
        servers.append(second)
        second.start()
        events["ready"] = second.ready_at
        worker.join(60)
        if worker.is_alive():
            raise RuntimeError("the stream did not resume within 60 s")
    finally:
        stop.set()
        client.close()
        for server in servers:
            server.kill()
    before = max(t for t in answers if t < events["killed"])
    after = min(t for t in answers if t > events["ready"])
    return {"down_s": down_s, "resume_after_ready_ms": (after - events["ready"]) * 1e3,
            "outage_ms": (after - before) * 1e3, "reconnects": client.reconnects}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle folder or archive to serve")
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json")
    parser.add_argument("--down", default="0,1,3", help="seconds the server stays dead, per scenario")
    parser.add_argument("--repeats", type=int, default=3, help="restarts per scenario (default: %(default)s)")
    parser.add_argument("--image", type=Path, default=None, help="frame to stream (default: a synthetic one)")


def _frame(path: Path | None) -> bytes:
    if path is not None:
        return path.read_bytes()
    import numpy as np

    from muselens.benchmarks.corpus_images import smooth_image
    from muselens.core.data.images import encode_jpeg

    return encode_jpeg(smooth_image(np.random.default_rng(0), 480, 640))


def main(args: argparse.Namespace) -> int:
    try:
        downs = [float(x) for x in args.down.split(",") if x.strip()]
    except ValueError:
        print(f"error: --down must be comma-separated seconds, got {args.down!r}", file=sys.stderr)
        return 2
    if not downs or any(d < 0 for d in downs) or args.repeats < 1:
        print("error: --down needs seconds >= 0 and --repeats >= 1", file=sys.stderr)
        return 2
    if not args.bundle.exists():
        print(f"error: bundle {args.bundle} does not exist", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    query = _frame(args.image)
    runs = []
    for down in downs:
        for i in range(args.repeats):
            print(f"restart with the server down {down:g} s ({i + 1}/{args.repeats})", file=sys.stderr, flush=True)
            runs.append(measure_restart(args.bundle, query, down, args.out))
            print(f"  resumed {runs[-1]['resume_after_ready_ms']:.0f} ms after the new server was ready; "
                  f"outage {runs[-1]['outage_ms']:.0f} ms", flush=True)
    summary = {str(d): {"resume_after_ready_ms": percentiles(r["resume_after_ready_ms"] for r in runs
                                                             if r["down_s"] == d),
                        "outage_ms": percentiles(r["outage_ms"] for r in runs if r["down_s"] == d)}
               for d in downs}
    write_bench(args.out, "reconnect", getattr(args, "argv", None),
                {"bundle": str(args.bundle), "runs": runs, "summary": summary, "bound_ms": 1000.0})
    return 0


def markdown(folder: Path, data: dict[str, Any]) -> str:
    lines = [f"## {folder.name}", "", f"`{data['command']}`", "", machine_line(data["environment"]) + ".", "",
             "Server killed with SIGKILL mid-stream, down for the given time, restarted on the same port; "
             "the client library reconnects with backoff.", "",
             "| server down (s) | restarts | resume after ready, ms p50 / max | outage, ms p50 / max |",
             "|---|---|---|---|"]
    for down, s in data["summary"].items():
        r, o = s["resume_after_ready_ms"], s["outage_ms"]
        lines.append(f"| {float(down):g} | {r['count']} | {r['p50']:.0f} / {r['max']:.0f} | "
                     f"{o['p50']:.0f} / {o['max']:.0f} |")
    worst = max(s["resume_after_ready_ms"]["max"] for s in data["summary"].values())
    lines += ["", f"Worst resume after the new server was ready: {worst:.0f} ms "
                  f"({'within' if worst < data['bound_ms'] else 'OVER'} the 1 s bound)."]
    return "\n".join(lines) + "\n"

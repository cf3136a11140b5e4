"""``muselens bench soak BUNDLE --out DIR --streams N --minutes M [--fps F]``: does the server hold steady?

N camera streams (the client library's reconnecting streams, F frames a second each, latest
frame wins on the server) run for M minutes against ``muselens serve`` in a child process.
Every ``--interval`` seconds it samples throughput (answers/s over the window), the p99 of
end-to-end latency (frame handed to gRPC -> its answer back) over the window, and the server's
RSS. Steady means: RSS flat over the second half (slope of a least-squares line, MiB/min) and
p99 stable (last window's p99 / first window's). Frames are the JPEGs of ``--frames DIR`` or,
by default, seeded synthetic 640x480 pictures.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from muselens.benchmarks import common
from muselens.benchmarks.bad_input import write_token_file
from muselens.runtime.server.process import ServerProcess
from muselens.benchmarks.corpus_images import smooth_image
from muselens.core.data.images import encode_jpeg

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def load_frames(folder: Path | None, seed: int = 0, count: int = 16) -> list[bytes]:
    """Encoded frames: every image under ``folder`` (sorted), or ``count`` synthetic 640x480 JPEGs."""
    if folder is None:
        rng = np.random.default_rng([seed, 0x50A])
        return [encode_jpeg(smooth_image(rng, 480, 640), 85) for _ in range(count)]
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no {'/'.join(IMAGE_SUFFIXES)} images under {folder}")
    return [p.read_bytes() for p in files]


class Recorder:
    """Answers (arrival time, latency) and errors from every stream, read by window."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self.frame_errors = 0
        self.dropped: dict[int, int] = {}
        self.reconnects: dict[int, int] = {}

    def window(self, start: float, end: float) -> list[float]:
        with self.lock:
            return [lat for t, lat in self.answers if start <= t < end]


def _camera(index: int, frames: list[bytes], fps: float, stop: threading.Event, sent: dict[str, float]):
    from muselens.runtime.client.client import frame_message

    period, n = 1.0 / fps, 0
    next_at = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if now < next_at:
            stop.wait(next_at - now)
            continue
        frame_id = f"{index}-{n}"
        message = frame_message(frames[(index * 7 + n) % len(frames)], frame_id=frame_id, timestamp=now)
        sent[frame_id] = time.monotonic()
        yield message
        n += 1
        next_at += period
        if next_at < time.monotonic() - period:  # fell behind (gRPC flow control): do not burst
            next_at = time.monotonic()


def _stream(index: int, address: str, token: str, frames: list[bytes], fps: float, stop: threading.Event,
            recorder: Recorder) -> None:
    from muselens.runtime.client.client import Backoff, MuselensClient

    sent: dict[str, float] = {}
    with MuselensClient(address, token=token, backoff=Backoff(initial=0.05, maximum=0.5), seed=index) as client:
        try:
            for answer in client.stream(_camera(index, frames, fps, stop, sent)):
                now = time.monotonic()
                start = sent.pop(answer.frame_id, None)
                with recorder.lock:
                    if answer.HasField("error"):
                        recorder.frame_errors += 1
                    elif start is not None:
                        recorder.answers.append((now, (now - start) * 1e3))
                    recorder.dropped[index] = answer.dropped_frames
                # frames dropped by the server never get an answer: forget the older ones
                for stale in [k for k, t in sent.items() if now - t > 30]:
                    sent.pop(stale, None)
        except Exception as exc:  # noqa: BLE001 -- recorded and reported, the other streams go on
            with recorder.lock:
                recorder.errors.append(f"stream {index}: {type(exc).__name__}: {exc}")
        recorder.reconnects[index] = client.reconnects


def rss_slope_mib_per_min(times_s: list[float], rss_mb: list[float]) -> float | None:
    """Least-squares slope of RSS over time, MiB per minute (None with fewer than 2 samples)."""
    if len(times_s) < 2 or max(times_s) == min(times_s):
        return None
    slope, _ = np.polyfit(np.asarray(times_s) / 60.0, np.asarray(rss_mb), 1)
    return float(slope)


def summarise(series: list[dict[str, float]]) -> dict[str, Any]:
    """Memory slope over the second half and the p99 drift, from the sampled windows."""
    if not series:
        return {}
    duration = series[-1]["t"]
    half = [s for s in series if s["t"] >= duration / 2]
    with_p99 = [s for s in series if s.get("p99_ms") is not None]
    out: dict[str, Any] = {
        "rss_slope_mib_per_min_second_half": rss_slope_mib_per_min([s["t"] for s in half], [s["rss_mb"] for s in half]),
        "rss_start_mb": series[0]["rss_mb"], "rss_end_mb": series[-1]["rss_mb"],
        "rss_max_mb": max(s["rss_mb"] for s in series),
        "throughput_mean": float(np.mean([s["throughput"] for s in series])),
    }
    if len(with_p99) >= 2:
        out["p99_first_ms"], out["p99_last_ms"] = with_p99[0]["p99_ms"], with_p99[-1]["p99_ms"]
        out["p99_ratio_last_to_first"] = with_p99[-1]["p99_ms"] / with_p99[0]["p99_ms"]
    return out


def run(bundle: Path, out: Path, *, streams: int, minutes: float, fps: float, interval: float = 5.0,
        threads: int | None = None, frames_dir: Path | None = None, seed: int = 0) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    tokens = write_token_file(out / "tokens.txt")
    frames = load_frames(frames_dir, seed)
    recorder = Recorder()
    stop = threading.Event()
    series: list[dict[str, float]] = []
    duration = minutes * 60.0
    with ServerProcess(bundle, token_file=out / "tokens.txt", threads=threads, log=out / "server.log") as server:
        workers = [threading.Thread(target=_stream, args=(i, server.address, tokens.client, frames, fps, stop,
                                                          recorder), name=f"soak-{i}", daemon=True)
                   for i in range(streams)]
        t0 = time.monotonic()
        for worker in workers:
            worker.start()
        window_start = t0
        while (now := time.monotonic()) - t0 < duration:
            time.sleep(min(interval, max(0.0, duration - (now - t0))))
            end = time.monotonic()
            latencies = recorder.window(window_start, end)
            series.append({"t": end - t0, "throughput": len(latencies) / (end - window_start),
                           "p99_ms": common.percentiles(latencies).get("p99"), "answers": len(latencies),
                           "rss_mb": common.rss_mb(server.pid)})
            print(f"[soak] t={end - t0:6.1f}s {series[-1]['throughput']:6.1f} answers/s p99 "
                  f"{series[-1]['p99_ms'] or float('nan'):7.1f} ms RSS {series[-1]['rss_mb']:7.1f} MiB",
                  file=sys.stderr, flush=True)
            window_start = end
        stop.set()
        for worker in workers:
            worker.join(60)
        alive = server.alive()
    everything = [lat for _, lat in recorder.answers]
    return {"bundle": str(bundle), "streams": streams, "minutes": minutes, "fps": fps, "interval_s": interval,
            "frames": "synthetic 640x480" if frames_dir is None else str(frames_dir), "series": series,
            "summary": summarise(series), "latency_ms": common.percentiles(everything),
            "answers": len(everything), "frame_errors": recorder.frame_errors, "stream_errors": recorder.errors,
            "dropped_frames": int(sum(recorder.dropped.values())), "reconnects": int(sum(recorder.reconnects.values())),
            "server_alive": alive}


def plot(path: Path, data: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = data["series"]
    t = [s["t"] / 60 for s in series]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    for ax, key, label in zip(axes, ("throughput", "p99_ms", "rss_mb"),
                              ("answers/s", "p99 e2e latency (ms)", "server RSS (MiB)")):
        ax.plot(t, [s[key] if s[key] is not None else np.nan for s in series], marker=".", lw=1.2)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    axes[0].set_title(f"soak: {data['streams']} streams x {data['fps']:g} fps for {data['minutes']:g} min")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_table(data: dict[str, Any]) -> str:
    s, lat = data["summary"], data["latency_ms"]
    rows = [("streams x fps", f"{data['streams']} x {data['fps']:g}"), ("minutes", f"{data['minutes']:g}"),
            ("answers", str(data["answers"])), ("mean throughput (answers/s)", _fmt(s.get("throughput_mean"), ".1f")),
            ("e2e p50 / p99 (ms)", f"{_fmt(lat.get('p50'), '.1f')} / {_fmt(lat.get('p99'), '.1f')}"),
            ("p99 first / last window (ms)",
             f"{_fmt(s.get('p99_first_ms'), '.1f')} / {_fmt(s.get('p99_last_ms'), '.1f')}"),
            ("p99 last / first", _fmt(s.get("p99_ratio_last_to_first"), ".2f")),
            ("RSS start / end / max (MiB)", f"{_fmt(s.get('rss_start_mb'), '.1f')} / {_fmt(s.get('rss_end_mb'), '.1f')}"
                                            f" / {_fmt(s.get('rss_max_mb'), '.1f')}"),
            ("RSS slope, second half (MiB/min)", _fmt(s.get("rss_slope_mib_per_min_second_half"), "+.2f")),
            ("frames dropped (latest wins) / frame errors", f"{data['dropped_frames']} / {data['frame_errors']}"),
            ("stream failures / reconnects", f"{len(data['stream_errors'])} / {data['reconnects']}"),
            ("server alive at the end", str(data["server_alive"]))]
    return "\n".join(["| measure | value |", "|---|---:|", *(f"| {k} | {v} |" for k, v in rows)])


def markdown(folder: Path, data: dict[str, Any]) -> str:
    lines = [f"## {folder.name}", "", f"`{data['command']}`", "", common.machine_line(data["environment"]), "",
             f"Frames: {data['frames']}; a sample every {data['interval_s']:g} s.", "", summary_table(data), ""]
    lines += [f"- {e}" for e in data["stream_errors"][:5]]
    lines.append(f"![soak](results/{folder.name}/soak.png)")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle folder or archive to serve")
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json, soak.png, the server log")
    parser.add_argument("--streams", type=int, required=True, help="concurrent camera streams")
    parser.add_argument("--minutes", type=float, required=True, help="how long to run")
    parser.add_argument("--fps", type=float, default=5.0,
                        help="frames a second each stream sends (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="the server's inference threads")
    parser.add_argument("--frames", type=Path, default=None, help="folder of JPEG/PNG frames (default: synthetic)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic frames")


def main(args: argparse.Namespace) -> int:
    problems = [name for name, ok in (("--streams", args.streams >= 1), ("--minutes", args.minutes > 0),
                                      ("--fps", args.fps > 0), ("--interval", args.interval > 0)) if not ok]
    if problems:
        print(f"error: {', '.join(problems)} must be positive", file=sys.stderr)
        return 2
    if not args.bundle.exists():
        print(f"error: bundle {args.bundle} does not exist", file=sys.stderr)
        return 2
    try:
        data = run(args.bundle, args.out, streams=args.streams, minutes=args.minutes, fps=args.fps,
                   interval=args.interval, threads=args.threads, frames_dir=args.frames, seed=args.seed)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = common.write_bench(args.out, "soak", getattr(args, "argv", None), data)
    plot(args.out / "soak.png", data)
    print(summary_table(data))
    print(f"wrote {path}")
    return 0 if data["server_alive"] and not data["stream_errors"] else 1

"""The simulated cameras of ``bench streams``: each a thread with its own connection and
``StreamRecognize`` call, sending frames at a fixed rate whether answers come or not (open loop),
and what a run of N of them measured."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from muselens.benchmarks import common
from muselens.benchmarks.load import STAGES, recognition_timings, summarise
from muselens.benchmarks.utilisation import GpuSampler, cpu_seconds


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


def share_spread(fps_per_stream: list[float]) -> float:
    """How unfairly the server shares itself: the largest distance of one stream's achieved FPS
    from the streams' mean, as a fraction of the mean (0: all alike; 1.0: one stream starved)."""
    mean = sum(fps_per_stream) / len(fps_per_stream) if fps_per_stream else 0.0
    return max(abs(f - mean) for f in fps_per_stream) / mean if mean > 0 else 1.0


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
            "share_spread": share_spread([p["achieved_fps"] for p in per_stream]),
            "sent_measured": sent, "answered_measured": answered,
            "unanswered_measured": sent - answered, "drop_rate": (sent - answered) / sent if sent else 0.0,
            "server_dropped_total": sum(c.server_dropped for c in cameras),
            "errors": sum(c.errors for c in cameras),
            "failures": [f"stream {c.index}: {c.failure}" for c in cameras if c.failure],
            "latency_ms": common.percentiles(latencies),
            "stages_ms": summarise(stages, None), "server_cpu": cpu, "gpu": gpu.result(),
            "hung_streams": hung, "per_stream": per_stream}

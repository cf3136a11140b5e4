"""A stream survives its server being killed: answers resume within 1 s of the new server being ready.

The server is a real ``muselens serve`` process, killed with SIGKILL mid-stream (no graceful
shutdown, no goodbye to the client) and restarted on the same port. One second is a functional
bound -- a visitor's camera must not freeze for longer than the restart itself -- not a benchmark.
"""

from __future__ import annotations

import threading
import time

import pytest

from muselens.runtime.server.process import ServerProcess
from muselens.runtime.client.client import Backoff, MuselensClient, frame_message

RESUME_BOUND_S = 1.0


@pytest.mark.slow
@pytest.mark.parametrize("extra_down_s", [0.0, 3.0])  # 3 s: a large bundle's restart; gRPC's own backoff grows
def test_a_stream_resumes_within_a_second_of_a_killed_server_coming_back(tiny_bundle, query_images, tmp_path,
                                                                         extra_down_s):
    first = ServerProcess(tiny_bundle, threads=1, log=tmp_path / "first.log").start()
    port = first.port
    stop = threading.Event()
    received: list[tuple[float, str]] = []
    events: dict[str, float] = {}
    servers = [first]

    def frames():
        i = 0
        while not stop.is_set():
            yield frame_message(query_images[i % 3], frame_id=f"{i:05d}")
            i += 1
            time.sleep(0.02)

    client = MuselensClient(f"127.0.0.1:{port}", backoff=Backoff(max_attempts=200),
                            seed=0)

    five = threading.Event()

    def consume():  # keeps pulling, so the client retries all through the outage
        for r in client.stream(frames()):
            received.append((time.monotonic(), r.frame_id))
            if len(received) == 5:
                five.set()
            if "ready" in events and received[-1][0] > events["ready"]:
                stop.set()
                return

    def restart():
        five.wait(60)
        first.kill()  # SIGKILL mid-stream
        events["killed"] = time.monotonic()
        time.sleep(extra_down_s)
        second = ServerProcess(tiny_bundle, port=port, threads=1, log=tmp_path / "second.log")
        servers.append(second)
        second.start()
        events["ready"] = second.ready_at

    controller = threading.Thread(target=restart, daemon=True)
    controller.start()
    worker = threading.Thread(target=consume, daemon=True)
    try:
        worker.start()
        worker.join(120)
        assert not worker.is_alive(), "the stream never resumed"
        assert client.reconnects >= 1
        resumed = next(t for t, _ in received if t > events["ready"]) - events["ready"]
        print(f"down {events['ready'] - events['killed']:.2f} s; answers resumed {resumed:.3f} s after ready")
        assert resumed < RESUME_BOUND_S, f"answers resumed {resumed:.3f} s after the new server was ready"
    finally:
        stop.set()
        client.close()
        for server in servers:
            server.kill()

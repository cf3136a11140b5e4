"""The client library: calls, and a stream that survives the server restarting."""

from __future__ import annotations

import random
import threading
import time

import grpc
import numpy as np
import pytest

from muselens.runtime.client import Backoff, MuselensClient, frame_message, image_message
from muselens.runtime.client.client import read_token
from muselens.runtime.recognition.holder import ModelHolder
from muselens.runtime.server.app import MuselensServer, ServerConfig
from tests.runtime.server.conftest import rgb


def test_backoff_grows_to_its_cap_with_jitter():
    backoff, rng = Backoff(initial=0.1, maximum=1.0), random.Random(0)
    delays = [[backoff.delay(attempt, rng) for _ in range(200)] for attempt in range(6)]
    assert all(0 <= d <= min(1.0, 0.1 * 2 ** a) for a, row in enumerate(delays) for d in row)
    assert max(delays[5]) > 0.9 and max(delays[0]) <= 0.1


def test_image_messages():
    image = np.zeros((40, 50, 3), np.uint8)
    assert image_message(b"abc").encoded == b"abc"
    assert image_message(image).encoded[:2] == b"\xff\xd8"
    assert frame_message(image, frame_id="7", timestamp=1.5).frame_id == "7"
    with pytest.raises(ValueError, match="uint8"):
        image_message(np.zeros((4, 4), np.float32))


def test_read_token(tmp_path):
    path = tmp_path / "t"
    path.write_text("admin aaaaaaaaaaaaaaaaaaaa\nclient cccccccccccccccccccc\n")
    assert read_token(path) == "cccccccccccccccccccc" and read_token(path, "admin") == "aaaaaaaaaaaaaaaaaaaa"
    assert read_token(None) is None
    path.write_text("admin aaaaaaaaaaaaaaaaaaaa\n")
    with pytest.raises(ValueError, match="no client token"):
        read_token(path)


def test_calls_and_repr_never_show_the_token(served, query_images):
    server = MuselensServer(ModelHolder(served), ServerConfig(host="127.0.0.1", port=0)).start()
    try:
        with MuselensClient(f"127.0.0.1:{server.port}", token="secret-token-123456789") as client:
            client.wait_ready(5)
            assert "secret" not in repr(client)
            assert client.recognize(rgb(query_images[0])).matches
            assert client.bundle_info().name == "tiny"
            answers = list(client.stream(frame_message(query_images[i % 3], frame_id=str(i)) for i in range(3)))
            assert answers and answers[-1].frame_id == "2"
    finally:
        server.stop(0)


def test_a_stream_reconnects_after_the_server_restarts(served, query_images):
    holder = ModelHolder(served)
    first = MuselensServer(holder, ServerConfig(host="127.0.0.1", port=0)).start()
    port = first.port
    stop = threading.Event()

    def frames():
        i = 0
        while not stop.is_set():
            yield frame_message(query_images[i % 3], frame_id=f"{i:05d}")
            i += 1
            time.sleep(0.02)

    client = MuselensClient(f"127.0.0.1:{port}", backoff=Backoff(initial=0.05, maximum=0.2), seed=0)
    received: list[tuple[float, str]] = []
    restarted: dict[str, float] = {}

    def consume():
        for r in client.stream(frames()):
            received.append((time.monotonic(), r.frame_id))
            if len(received) >= 5 and "killed" not in restarted:
                restarted["killed"] = time.monotonic()
                first.stop(0)  # the server dies mid-stream
                second = MuselensServer(holder, ServerConfig(host="127.0.0.1", port=port)).start()
                restarted["up"] = time.monotonic()
                restarted["server"] = second
            if "up" in restarted and received[-1][0] > restarted["up"] and len(received) >= 10:
                stop.set()
                return

    worker = threading.Thread(target=consume)
    worker.start()
    worker.join(30)
    try:
        assert not worker.is_alive()
        assert client.reconnects >= 1
        after = [t for t, _ in received if t > restarted["up"]]
        assert after and after[0] - restarted["up"] < 1.0  # resumed within a second of the restart
    finally:
        stop.set()
        client.close()
        if "server" in restarted:
            restarted["server"].stop(0)


def test_errors_that_are_not_outages_are_not_retried(served, query_images):
    from muselens.runtime.server.auth import Tokens

    server = MuselensServer(ModelHolder(served), ServerConfig(host="127.0.0.1", port=0,
                                                              tokens=Tokens(client=("c" * 20,)))).start()
    try:
        with MuselensClient(f"127.0.0.1:{server.port}") as client:
            with pytest.raises(grpc.RpcError) as err:
                list(client.stream(iter([frame_message(query_images[0])])))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and client.reconnects == 0
    finally:
        server.stop(0)

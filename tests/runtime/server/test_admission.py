"""Admission: no client can take every worker with streams it never uses, and an overloaded
server refuses at once instead of queueing calls until their deadlines."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc


from muselens.runtime.server.admission import TokenAdmission, default_max_calls_per_token, default_max_streams
from muselens.runtime.server.app import ServerConfig
from muselens.runtime.server.auth import Tokens
from muselens.v1 import recognition_pb2 as pb
from tests.runtime.server.conftest import frame, slow_model


class IdleStream:
    """A StreamRecognize that sends nothing and never half-closes until released."""

    def __init__(self, stub, metadata=()):
        self.release = threading.Event()
        self.outcome: list = []

        def requests():
            self.release.wait()
            return
            yield  # a generator that yields nothing

        def run():
            try:
                self.outcome.extend(stub.StreamRecognize(requests(), metadata=metadata, timeout=60))
                self.outcome.append("ended")
            except grpc.RpcError as exc:
                self.outcome.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def error(self, wait: float = 10.0):
        self.thread.join(wait)
        assert not self.thread.is_alive(), "the stream is still open"
        return self.outcome[-1]


def test_idle_streams_on_every_worker_stall_nothing(served, start_server, query_images):
    """As many idle streams as workers: a good call, the health check and an admin call all
    waited for their deadlines (16 workers, 16 streams). Now the streams beyond the cap are
    refused at once and the rest of the server answers."""
    server = start_server(served, max_workers=4)
    streams = [IdleStream(server.stub) for _ in range(4)]
    try:
        deadline = time.monotonic() + 10
        while all(s.thread.is_alive() for s in streams) and time.monotonic() < deadline:
            time.sleep(0.02)
        ended = [s for s in streams if not s.thread.is_alive()]
        assert len(ended) == 1, "one of the four streams must be refused: the cap is 3 of 4 workers"
        refused = ended[0].error()
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "maximum of 3 open streams" in refused.details()
        answer = server.stub.Recognize(frame(query_images[0]), timeout=5)
        assert answer.matches
        health = health_pb2_grpc.HealthStub(server.channel)
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:  # answered (admin is disabled here), not left waiting
            server.admin.LoadBundle(pb.LoadBundleRequest(path="/nowhere"), timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert server.server.admission.open == 3
    finally:
        for stream in streams:
            stream.release.set()
    assert sorted(map(str, (s.error() for s in streams if s is not ended[0]))) == ["ended"] * 3
    assert server.server.admission.open == 0
    assert server.server.metrics.streams_closed.labels("capacity")._value.get() == 1


def test_a_stream_that_sends_nothing_is_closed_after_the_idle_time(served, start_server, query_images):
    server = start_server(served, stream_idle_seconds=0.5)
    idle = IdleStream(server.stub)
    try:
        error = idle.error(wait=15)
    finally:
        idle.release.set()
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "no frame for 0.5 s" in error.details()
    assert server.server.admission.open == 0
    assert server.server.metrics.streams_closed.labels("idle")._value.get() == 1

    gap = threading.Event()

    def one_frame_then_silence():
        yield frame(query_images[0], "f0")
        gap.wait(10)

    answers = []
    with pytest.raises(grpc.RpcError) as err:
        for answer in server.stub.StreamRecognize(one_frame_then_silence(), timeout=30):
            answers.append(answer.frame_id)
    gap.set()
    assert answers == ["f0"] and err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_client_token_holds_at_most_its_own_cap(served, start_server):
    tokens = Tokens(client=("client-token-aaaaaaaaaaaaaaaa", "client-token-bbbbbbbbbbbbbbbb"))
    server = start_server(served, tokens=tokens, max_streams_per_token=1)
    as_a = (("authorization", "Bearer client-token-aaaaaaaaaaaaaaaa"),)
    as_b = (("authorization", "Bearer client-token-bbbbbbbbbbbbbbbb"),)
    pair = [IdleStream(server.stub, as_a), IdleStream(server.stub, as_a)]
    other = None
    try:
        deadline = time.monotonic() + 10
        while all(s.thread.is_alive() for s in pair) and time.monotonic() < deadline:
            time.sleep(0.02)
        kept = [s for s in pair if s.thread.is_alive()]
        assert len(kept) == 1, "one of the token's two streams must be refused"
        refused = next(s for s in pair if s is not kept[0]).error()
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "this client token" in refused.details()
        other = IdleStream(server.stub, as_b)  # another client is not held back by the first
        time.sleep(0.5)
        assert other.thread.is_alive() and kept[0].thread.is_alive()
    finally:
        for stream in (*pair, other):
            if stream is not None:
                stream.release.set()
    assert kept[0].error() == "ended" and other.error() == "ended"


def test_calls_beyond_the_pending_cap_are_refused_at_once(served, start_server, query_images):
    """2,000 concurrent calls once mostly ended DEADLINE_EXCEEDED after queueing; the ones the
    server cannot hold are refused straight away now."""
    server = start_server(slow_model(served, 1.0), max_workers=1, max_pending_calls=2)
    futures = [server.stub.Recognize.future(frame(query_images[0]), timeout=30) for _ in range(6)]
    started = time.monotonic()
    codes = []
    for future in futures:
        try:
            future.result()
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            codes.append(exc.code())
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                assert time.monotonic() - started < 5  # not after a deadline
    assert codes.count(grpc.StatusCode.OK) >= 1
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 3


@pytest.mark.parametrize("fields, match", [
    ({"max_streams": 0}, "max_streams must be in 1..max_workers"),
    ({"max_workers": 4, "max_streams": 5}, "max_streams must be in 1..max_workers"),
    ({"max_streams_per_token": 0}, "max_streams_per_token must be >= 1"),
    ({"stream_idle_seconds": 0}, "stream_idle_seconds must be > 0"),
    ({"max_workers": 4, "max_pending_calls": 3}, "max_pending_calls must be >= max_workers"),
    ({"max_calls_per_token": 0}, "max_calls_per_token must be >= 1"),
])
def test_admission_settings_are_checked(fields, match):
    with pytest.raises(ValueError, match=match):
        ServerConfig(**fields)


def test_admission_counts_and_frees():
    assert [default_max_streams(w) for w in (1, 2, 4, 16)] == [1, 1, 3, 12]
    assert [default_max_calls_per_token(w) for w in (1, 4, 16)] == [1, 1, 4]
    calls = TokenAdmission(1, what="calls in flight")
    assert calls.enter(None) is None and calls.enter(None) == "the server holds its maximum of 1 calls in flight"
    admission = TokenAdmission(2, max_per_token=1)
    assert admission.enter("a") is None and admission.enter("a") is not None
    assert admission.enter(None) is None and admission.enter("b") is not None  # the server is full
    admission.leave("a")
    assert admission.enter("b") is None and admission.open == 2


CLIENTS = Tokens(client=("client-token-aaaaaaaaaaaaaaaa", "client-token-bbbbbbbbbbbbbbbb"))
AS_A = (("authorization", "Bearer client-token-aaaaaaaaaaaaaaaa"),)
AS_B = (("authorization", "Bearer client-token-bbbbbbbbbbbbbbbb"),)


def _outcome(future) -> str:
    try:
        future.result()
        return "OK"
    except grpc.RpcError as exc:
        return exc.code().name


def test_a_flood_from_one_token_neither_crowds_out_nor_delays_another(served, start_server, query_images):
    """Twelve calls of one client in flight once took every place in the queue and the inference
    gate served waiters in any order: another client's call waited for most of them. Now the
    flooding token runs its four, the rest are refused at once, and the gate takes turns: the
    other client waits for at most the one inference under way."""
    slow = slow_model(served, 0.4)
    server = start_server(slow, tokens=CLIENTS, max_workers=8, max_calls_per_token=4)
    started = time.monotonic()
    flood = [server.stub.Recognize.future(frame(query_images[0]), metadata=AS_A, timeout=30) for _ in range(12)]
    refused: list = []
    while len(refused) < 8 and time.monotonic() - started < 2:  # at once, not after their turn
        time.sleep(0.01)
        refused = [f for f in flood if f.done() and _outcome(f) == "RESOURCE_EXHAUSTED"]
    assert len(refused) == 8 and server.server.calls.open == 4
    assert "this client token holds its maximum of 4 calls in flight" in refused[0].exception().details()
    time.sleep(0.1)
    sent = time.monotonic()
    assert server.stub.Recognize(frame(query_images[1]), metadata=AS_B, timeout=30).matches
    assert time.monotonic() - sent < 2 * 0.4 + 0.3  # its own run and at most one of the flood's
    assert sorted(_outcome(f) for f in flood) == ["OK"] * 4 + ["RESOURCE_EXHAUSTED"] * 8
    assert server.server.calls.open == 0
    assert server.server.metrics.frames.labels("Recognize", "capacity")._value.get() == 8


def test_without_client_tokens_calls_are_not_told_apart(served, start_server, query_images):
    server = start_server(slow_model(served, 0.3), max_workers=4, max_calls_per_token=1)
    calls = [server.stub.Recognize.future(frame(query_images[0]), metadata=AS_A, timeout=30) for _ in range(2)]
    assert [_outcome(f) for f in calls] == ["OK", "OK"]  # a token the server does not check is no identity


def test_decoding_takes_turns_between_clients(served, start_server, query_images, monkeypatch):
    """Decoding is CPU work a client chooses (a 16 MB raw frame costs tens of milliseconds): four of
    one client's frames decoding at once once took the cores from another's. With one decode at a
    time, served in turn between clients, the other client waits for at most one of the flood's."""
    from muselens.runtime.server import convert

    decode = convert.image_pixels
    running, most = [0], [0]

    def slow_decode(image, limits, what="frame", *, at_least=None):
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.3)
        running[0] -= 1
        return decode(image, limits, what, at_least=at_least)

    monkeypatch.setattr(convert, "image_pixels", slow_decode)
    server = start_server(served, tokens=CLIENTS, max_workers=8, max_calls_per_token=4, decode_slots=1)
    flood = [server.stub.Recognize.future(frame(query_images[0]), metadata=AS_A, timeout=30) for _ in range(4)]
    time.sleep(0.1)  # the first of the flood is decoding, three wait
    sent = time.monotonic()
    assert server.stub.Recognize(frame(query_images[1]), metadata=AS_B, timeout=30).matches
    waited = time.monotonic() - sent
    assert waited < 3 * 0.3  # the one decode under way and its own; not behind the three queued
    assert [_outcome(f) for f in flood] == ["OK"] * 4 and most[0] == 1


def test_a_call_over_its_cap_is_refused_before_its_request_is_read(served, start_server, query_images):
    """Refusing a flood used to read and parse every refused request first. A malformed request
    shows the difference: read, it would be answered INVALID_ARGUMENT (malformed_message); refused
    at the door, it is RESOURCE_EXHAUSTED like any call over the cap."""
    server = start_server(slow_model(served, 0.5), tokens=CLIENTS, max_workers=8, max_calls_per_token=1)
    raw = server.channel.unary_unary("/muselens.v1.Recognizer/Recognize")
    running = server.stub.Recognize.future(frame(query_images[0]), metadata=AS_A, timeout=30)
    deadline = time.monotonic() + 5
    while server.server.calls.open < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\xff\xff\xff", metadata=AS_A, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "this client token holds its maximum of 1 calls in flight" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:  # another client, under its cap: its request is read
        raw(b"\xff\xff\xff", metadata=AS_B, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "malformed_message" in err.value.details()
    assert running.result().matches
    assert server.server.metrics.frames.labels("Recognize", "capacity")._value.get() == 1
    assert server.server.calls.open == 0

"""A client whose frames keep being refused for their cost is held and refused at the door."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from muselens.benchmarks.abuse_attacks import scan_bomb
from muselens.runtime.server.penalty import COSTLY_REASONS, PENALISED, RefusalPenalty
from muselens.runtime.server.auth import Tokens
from muselens.v1 import recognition_pb2 as pb
from tests.runtime.server.conftest import frame
from tests.fake_clock import FakeClock



def test_a_token_is_penalised_after_limit_costly_refusals_within_the_window():
    clock = FakeClock()
    penalty = RefusalPenalty(limit=3, window_s=2.0, penalty_s=5.0, clock=clock)
    assert not penalty.record("a", "too_many_scans") and not penalty.record("a", "too_large")
    clock.now += 0.5
    assert penalty.record("a", "too_many_pixels")  # the third within 2 s
    left, why = penalty.remaining("a")
    assert left == pytest.approx(5.0) and why.endswith("for their cost (the last: too_many_pixels)")
    assert penalty.message("a").startswith(f"{PENALISED}: 3 frames of this client were refused within 2 s")
    assert penalty.remaining("b") is None and penalty.message("b") is None
    clock.now += 5.01
    assert penalty.remaining("a") is None  # served its time


def test_slow_costly_refusals_broken_frames_and_anonymous_clients_are_never_penalised():
    clock = FakeClock()
    penalty = RefusalPenalty(limit=3, window_s=2.0, clock=clock)
    for _ in range(10):  # one every 1.5 s: never three within 2 s
        assert not penalty.record("slow", "too_many_scans")
        clock.now += 1.5
    for _ in range(10):
        assert not penalty.record("broken", "corrupt")  # a broken camera, not a costly frame
        assert not penalty.record(None, "too_many_scans")  # not told apart: would penalise everyone
    assert "corrupt" not in COSTLY_REASONS and {"too_many_scans", "too_large"} <= COSTLY_REASONS
    never = RefusalPenalty(limit=0, flood_limit=0, clock=clock)
    assert not never.active and not any(never.record("a", "too_many_scans") for _ in range(20))
    with pytest.raises(ValueError):
        RefusalPenalty(limit=-1)


CLIENTS = Tokens(client=("client-token-aaaaaaaaaaaaaaaa", "client-token-bbbbbbbbbbbbbbbb"))
AS_A = (("authorization", "Bearer client-token-aaaaaaaaaaaaaaaa"),)
AS_B = (("authorization", "Bearer client-token-bbbbbbbbbbbbbbbb"),)


@pytest.fixture(scope="module")
def bomb() -> pb.Frame:
    return pb.Frame(frame_id="bomb", image=pb.Image(encoded=scan_bomb(64, 48, 100)))


def test_a_client_sending_scan_bombs_is_held_then_refused_unread_and_others_are_not(
        served, start_server, query_images, bomb):
    server = start_server(served, tokens=CLIENTS, penalty_after=3)
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as err:
            server.stub.Recognize(bomb, metadata=AS_A, timeout=10)
        assert err.value.details().startswith("too_many_scans:")
    sent = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:  # even a good frame: the client is penalised
        server.stub.Recognize(frame(query_images[0]), metadata=AS_A, timeout=10)
    held = time.monotonic() - sent
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.value.details().startswith(f"{PENALISED}: 3 frames of this client were refused")
    assert 0.9 < held < 3  # held for the penalty's hold (1 s), not answered at once
    with pytest.raises(grpc.RpcError) as err:  # its request is not even read: a malformed one is refused alike
        server.channel.unary_unary("/muselens.v1.Recognizer/Recognize")(b"\xff\xff\xff", metadata=AS_A, timeout=10)
    assert err.value.details().startswith(f"{PENALISED}:")
    with pytest.raises(grpc.RpcError) as err:  # nor may it open a stream
        list(server.stub.StreamRecognize(iter([frame(query_images[0])]), metadata=AS_A, timeout=10))
    assert err.value.details().startswith(f"{PENALISED}:")
    sent = time.monotonic()
    assert server.stub.Recognize(frame(query_images[1]), metadata=AS_B, timeout=10).matches  # another client
    assert time.monotonic() - sent < 0.9
    metrics = server.server.metrics.frames
    assert metrics.labels("Recognize", "penalised")._value.get() == 2
    assert metrics.labels("StreamRecognize", "penalised")._value.get() == 1
    assert server.server.calls.open == 0


def test_a_stream_of_costly_frames_is_closed_when_its_client_is_penalised(served, start_server, query_images,
                                                                           bomb):
    server = start_server(served, tokens=CLIENTS, penalty_after=3)
    answers, answered = [], threading.Semaphore(0)

    def lock_step():  # each frame after the answer to the one before: none dropped as stale
        for item in [frame(query_images[0]), bomb, bomb, bomb, bomb]:
            yield item
            answered.acquire(timeout=10)

    with pytest.raises(grpc.RpcError) as err:
        for answer in server.stub.StreamRecognize(lock_step(), metadata=AS_A, timeout=20):
            answers.append(answer)
            answered.release()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and err.value.details().startswith(PENALISED)
    assert answers[0].matches and [a.error.reason for a in answers[1:]] == ["too_many_scans"] * (len(answers) - 1)
    assert server.server.metrics.streams_closed.labels("penalised")._value.get() == 1


def test_without_tokens_or_with_the_penalty_off_nobody_is_penalised(served, start_server, bomb):
    for config in ({}, {"tokens": CLIENTS, "penalty_after": 0}):
        server = start_server(served, **config)
        for _ in range(6):
            with pytest.raises(grpc.RpcError) as err:
                server.stub.Recognize(bomb, metadata=AS_A, timeout=10)
            assert err.value.details().startswith("too_many_scans:")


def test_a_client_flooding_over_its_cap_is_penalised_and_its_calls_are_no_longer_run(
        served, start_server, query_images):
    from tests.runtime.server.conftest import slow_model

    server = start_server(slow_model(served, 0.3), tokens=CLIENTS, max_workers=8, max_calls_per_token=1,
                          flood_penalty_after=4)
    flood = [server.stub.Recognize.future(frame(query_images[0]), metadata=AS_A, timeout=30) for _ in range(6)]
    outcomes = []
    for future in flood:
        try:
            future.result()
            outcomes.append("OK")
        except grpc.RpcError as exc:
            outcomes.append(exc.details().split(":", 1)[0])
    assert outcomes.count("OK") >= 1 and outcomes.count("call refused") >= 4
    assert server.server.penalty.remaining(CLIENTS.client[0]) is not None
    with pytest.raises(grpc.RpcError) as err:  # a call that would have been admitted: not run, the client is penalised
        server.stub.Recognize(frame(query_images[0]), metadata=AS_A, timeout=10)
    assert err.value.details().startswith(f"{PENALISED}: 4 calls of this client were refused within 2 s over its")
    assert server.stub.Recognize(frame(query_images[1]), metadata=AS_B, timeout=10).matches


def test_serve_flags_default_to_the_penalties_and_zero_turns_them_off():
    import argparse

    from muselens.runtime.server import serve_command
    from muselens.runtime.server.app import ServerConfig

    parser = argparse.ArgumentParser()
    serve_command.add_arguments(parser)
    args = parser.parse_args(["bundle"])
    assert (args.penalty_after, args.flood_penalty_after) == (8, 64)
    assert (ServerConfig.penalty_after, ServerConfig.flood_penalty_after) == (8, 64)
    with pytest.raises(ValueError, match="penalty_after"):
        ServerConfig(penalty_after=-1)


def test_calls_with_a_token_the_server_does_not_know_are_left_to_the_auth(served, start_server, bomb):
    server = start_server(served, tokens=CLIENTS, max_calls_per_token=1, flood_penalty_after=1)
    stranger = (("authorization", "Bearer not-a-token-of-this-server"),)
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as err:
            server.stub.Recognize(bomb, metadata=stranger, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert server.server.penalty.remaining("not-a-token-of-this-server") is None
    assert server.server.metrics.frames.labels("Recognize", "penalised")._value.get() == 0


def test_a_held_call_is_let_go_as_soon_as_its_client_gives_up(served, start_server, query_images, bomb):
    server = start_server(served, tokens=CLIENTS, penalty_after=1)
    with pytest.raises(grpc.RpcError):
        server.stub.Recognize(bomb, metadata=AS_A, timeout=10)
    assert server.server.penalty.remaining(CLIENTS.client[0]) is not None
    with pytest.raises(grpc.RpcError) as err:  # held for up to 1 s, but the client's deadline is 0.2 s
        server.stub.Recognize(frame(query_images[0]), metadata=AS_A, timeout=0.2)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 0.5
    while server.server.calls.open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.server.calls.open == 0  # its place among the client's calls is free again, before the hold ends

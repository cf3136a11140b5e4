"""Background verification: one frame in flight per stream, on a budget, in a pool that never queues."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from muselens.runtime.recognition.background_verification import StreamVerification, VerificationPool
from muselens.runtime.verification import VERIFIED, VerificationReport


class FakeModel:
    """Verifies every frame as ``a1`` after ``gate`` opens; counts its calls."""

    verifier = object()

    def __init__(self, fail: bool = False):
        self.gate = threading.Event()
        self.calls = 0
        self.fail = fail
        self.asked: list[tuple] = []

    def verify(self, image, ids, descriptor, *, keep_pairs=False, regional_scores=None, search_threads=None):
        self.calls += 1
        self.asked.append((tuple(ids), regional_scores))
        self.search_threads = search_threads
        self.gate.wait(5)
        if self.fail:
            raise RuntimeError("broken")
        return VerificationReport(VERIFIED, "a1", 0, inliers=40)


def offer(stream: StreamVerification, model, frame_id: str) -> bool:
    return stream.offer(model, frame_id, np.zeros((4, 4, 3), np.uint8), ["a1"], np.zeros(4, np.float32),
                        time.perf_counter())


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_one_frame_in_flight_then_its_answer_is_taken_once():
    pool, model = VerificationPool(1, busy_share=1.0), FakeModel()
    stream = StreamVerification(pool, interval_s=0.0)
    assert offer(stream, model, "1") and not offer(stream, model, "2")  # busy with frame 1
    assert stream.take_new() is None
    model.gate.set()
    wait_for(lambda: stream.latest is not None)
    done = stream.take_new()
    assert done.frame_id == "1" and done.report.instance_id == "a1" and done.age_ms() >= 0
    assert stream.take_new() is None and stream.latest is done
    assert offer(stream, model, "3")
    pool.shutdown()


def test_the_frame_is_verified_with_the_candidates_and_part_scores_its_recognition_found():
    pool, model = VerificationPool(1, busy_share=1.0), FakeModel()
    model.gate.set()
    stream = StreamVerification(pool, interval_s=0.0)
    assert stream.offer(model, "1", np.zeros((4, 4, 3), np.uint8), ["a1", "a2", "a7"], np.zeros(4, np.float32),
                        time.perf_counter(), regional_scores={"a7": 0.8})
    wait_for(lambda: stream.latest is not None)
    assert model.asked == [(("a1", "a2", "a7"), {"a7": 0.8})]
    assert model.search_threads == 1  # beside the stream: the vote search takes one core, not both
    pool.shutdown()


def test_a_frame_is_due_only_when_an_offer_would_be_taken():
    pool, model = VerificationPool(1, busy_share=1.0), FakeModel()
    stream = StreamVerification(pool, interval_s=60.0)
    assert stream.due() and offer(stream, model, "1")
    assert not stream.due()  # one in flight
    model.gate.set()
    wait_for(lambda: stream.latest is not None)
    assert not stream.due() and not offer(stream, model, "2")  # the interval is not over
    pool.shutdown()


def test_a_stream_offers_no_more_often_than_its_interval():
    pool, model = VerificationPool(1, busy_share=1.0), FakeModel()
    model.gate.set()
    stream = StreamVerification(pool, interval_s=60.0)
    assert offer(stream, model, "1")
    wait_for(lambda: stream.latest is not None)
    assert not offer(stream, model, "2") and model.calls == 1
    pool.shutdown()


def test_the_pool_refuses_beyond_its_room_instead_of_queueing_stale_frames():
    pool, model = VerificationPool(1, busy_share=1.0), FakeModel()
    streams = [StreamVerification(pool, interval_s=0.0) for _ in range(3)]
    taken = [offer(s, model, str(i)) for i, s in enumerate(streams)]
    assert taken == [True, True, False]  # one running, one waiting, no more
    model.gate.set()
    wait_for(lambda: all(s.latest is not None for s in streams[:2]))
    assert offer(streams[2], model, "2")
    pool.shutdown()


def test_a_failing_verification_is_counted_and_the_stream_goes_on():
    pool, model = VerificationPool(1, busy_share=1.0), FakeModel(fail=True)
    model.gate.set()
    stream = StreamVerification(pool, interval_s=0.0)
    assert offer(stream, model, "1")
    wait_for(lambda: stream.errors == 1)
    assert stream.latest is None and offer(stream, model, "2")
    pool.shutdown()


def test_a_stream_that_leaves_the_box_idle_is_verified_more_often():
    pool = VerificationPool(1, busy_share=1.0)
    stream = StreamVerification(pool, interval_s=0.5)  # the default idle interval: 0.1 s
    assert stream.current_interval_s == 0.5 and not stream.idle  # nothing known yet
    for i in range(10):  # 10 FPS, 30 ms a frame: busy 30 % of the time
        stream.record(100.0 + 0.1 * i, 30.0)
    assert stream.busy_share < 0.5 and stream.current_interval_s == 0.1 and stream.idle
    for i in range(10, 40):  # 20 FPS, 48 ms a frame: busy almost all the time
        stream.record(100.0 + 0.9 + 0.05 * (i - 9), 48.0)
    assert stream.busy_share > 0.8 and stream.current_interval_s == 0.5 and not stream.idle
    assert StreamVerification(pool, interval_s=0.1, idle_interval_s=0.2).idle_interval_s == 0.1  # never longer
    pool.shutdown()


def resting_pool(work_s: float = 0.2) -> VerificationPool:
    """A pool at half its threads' time that has just run a job of ``work_s``: it rests as long."""
    pool = VerificationPool(1, busy_share=0.5)
    done = threading.Event()
    assert pool.try_submit(lambda: (time.sleep(work_s), done.set()))
    assert done.wait(5)
    time.sleep(0.02)
    return pool


def test_the_pool_rests_so_verification_keeps_to_its_share_of_time():
    pool = resting_pool()
    assert not pool.try_submit(lambda: None)  # resting: 0.2 s of work, 0.2 s of rest
    time.sleep(0.25)
    assert pool.try_submit(lambda: None)
    pool.shutdown()
    eager = VerificationPool(1, busy_share=1.0)
    finished = threading.Event()
    assert eager.try_submit(finished.set) and finished.wait(5)
    time.sleep(0.02)
    assert eager.try_submit(lambda: None)  # 1.0: no rest
    eager.shutdown()
    with pytest.raises(ValueError):
        VerificationPool(1, busy_share=0.0)


def test_an_idle_streams_frame_is_taken_while_the_pool_rests_and_adds_no_rest():
    """A stream that leaves the box idle uses the idle cores: the busy streams' budget does not hold it."""
    pool = resting_pool()
    assert not pool.try_submit(lambda: None)  # a busy stream's frame: the pool rests
    idle_done = threading.Event()
    assert pool.try_submit(lambda: (time.sleep(0.3), idle_done.set()), rest=False)
    assert idle_done.wait(5)
    time.sleep(0.25)  # the first job's rest is over, and the idle job added none
    assert pool.try_submit(lambda: None)
    pool.shutdown()

    model, rested = FakeModel(), resting_pool()
    model.gate.set()
    stream = StreamVerification(rested, interval_s=0.5)
    for i in range(10):  # 10 FPS at 30 ms a frame: idle
        stream.record(100.0 + 0.1 * i, 30.0)
    assert offer(stream, model, "f1")  # taken although the pool rests
    rested.shutdown()


def test_a_frame_a_little_early_for_the_interval_counts_as_on_time(monkeypatch):
    """Frames arrive with jitter: at 10 FPS, a stream verified every 0.2 s takes every second frame
    even when it comes after 199 ms, not every third."""
    from muselens.runtime.recognition import background_verification

    clock = [100.0]
    monkeypatch.setattr(background_verification, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    pool, model = VerificationPool(1, busy_share=1.0), FakeModel()
    model.gate.set()
    stream = StreamVerification(pool, interval_s=0.2)
    assert offer(stream, model, "1")
    wait_for(lambda: stream.latest is not None)
    clock[0] += 0.1
    assert not offer(stream, model, "2")  # half the interval: too early
    clock[0] += 0.099  # 0.199 s after the first: within the slack
    assert offer(stream, model, "3")
    pool.shutdown()


def test_a_verification_counts_as_other_work_while_it_runs():
    """The streams' inferences take one core while a verification runs (engine.activity)."""
    from muselens.runtime.engine.activity import ACTIVITY

    pool, model = VerificationPool(1, busy_share=1.0), FakeModel()
    stream = StreamVerification(pool, interval_s=0.0)
    assert ACTIVITY.others() == 0
    assert offer(stream, model, "1")
    wait_for(lambda: model.calls == 1)
    assert ACTIVITY.others() == 1  # from this thread, the verification is someone else's work
    model.gate.set()
    wait_for(lambda: stream.latest is not None)
    wait_for(lambda: ACTIVITY.others() == 0)
    pool.shutdown()

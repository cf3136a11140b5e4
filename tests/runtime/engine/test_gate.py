"""The inference gate: at most N runs in flight, cancelled waiters leave, waits are reported."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from muselens.runtime.engine import Describer
from muselens.runtime.engine.cancel import Cancellation, Cancelled
from muselens.runtime.engine.activity import ACTIVITY
from muselens.runtime.engine.gate import InferenceGate, fair_share, slots_for
from tests.fake_clock import FakeClock


def test_slots_per_backend_and_their_checks():
    assert slots_for("ort-cpu") == 1 and slots_for("tensorrt") == 1 and slots_for("ort-cuda") == 2
    assert slots_for("ort-cpu", 3) == 3
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match=r"slots must be (an int )?>= 1"):
            slots_for("ort-cpu", bad)
    with pytest.raises(ValueError, match="'tensorrt' runs at most 1 inference"):
        slots_for("tensorrt", 2)
    with pytest.raises(ValueError, match=r"slots must be (an int )?>= 1"):
        InferenceGate(0)


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_never_more_holders_than_slots(slots):
    gate = InferenceGate(slots)
    inside, most, lock = 0, 0, threading.Lock()
    waits: list[float] = []

    def work() -> None:
        nonlocal inside, most
        with gate.slot() as waited:
            with lock:
                inside += 1
                most = max(most, inside)
                waits.append(waited)
            time.sleep(0.03)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert most == slots and gate.in_use == 0
    # at most `slots` holds of 30 ms overlap, however the threads were scheduled (a lower bound,
    # so a busy machine cannot fail it, where the last waiter's own wait could be short)
    assert elapsed >= 0.03 * -(-8 // slots) * 0.99
    assert max(waits) > 0  # someone waited for a slot


def test_a_cancelled_waiter_leaves_at_once_and_the_slot_survives():
    gate = InferenceGate(1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.slot():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    cancel = Cancellation()
    outcome: list[object] = []

    def wait() -> None:
        try:
            with gate.slot(cancel):
                outcome.append("ran")
        except Cancelled as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.05)
    assert waiter.is_alive()  # queued behind the holder
    started = time.perf_counter()
    cancel.cancel()
    waiter.join(5)
    assert not waiter.is_alive() and time.perf_counter() - started < 1.0
    assert isinstance(outcome[0], Cancelled) and "inference slot" in str(outcome[0])
    release.set()
    holder.join(5)
    assert gate.in_use == 0
    with gate.slot() as waited:  # the slot is free again
        assert waited < 1e3


def test_an_already_cancelled_call_does_not_run_even_with_a_free_slot():
    cancel = Cancellation()
    cancel.cancel()
    with pytest.raises(Cancelled):
        with InferenceGate(2).slot(cancel):
            pytest.fail("ran a cancelled call")


def _queue_in_order(gate: InferenceGate, keys: list[str], order: list[str], holding_key: str):
    """A holder of ``holding_key`` takes the slot, then one waiter per key in ``keys`` queues
    behind it, strictly in that order; returns (release the holder, the waiters' threads)."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with fair_share(holding_key), gate.slot():
            holding.set()
            release.wait(10)

    def wait(name: str, key: str) -> None:
        with fair_share(key), gate.slot():
            order.append(name)
            time.sleep(0.01)

    threading.Thread(target=hold).start()
    assert holding.wait(10)
    threads = []
    for n, key in enumerate(keys):
        threads.append(threading.Thread(target=wait, args=(f"{key}{n}", key)))
        threads[-1].start()
        deadline = time.monotonic() + 5
        while sum(len(q) for q in gate._waiting.values()) < n + 1 and time.monotonic() < deadline:
            time.sleep(0.002)
    return release, threads


def test_a_freed_slot_goes_to_the_client_served_least_recently():
    """One client's queue of calls (a flood) once delayed another client's call by all of them:
    waiters took the slot in whatever order the threads woke."""
    gate, order = InferenceGate(1), []
    release, threads = _queue_in_order(gate, ["flood"] * 6 + ["good"], order, holding_key="flood")
    release.set()
    for t in threads:
        t.join(10)
    assert order[0] == "good6" and order[1:] == [f"flood{n}" for n in range(6)]  # first come first served within
    assert gate.in_use == 0 and gate._waiting == {}


def test_fair_turns_between_two_busy_clients_and_a_cancelled_waiter_leaves_its_queue():
    gate, order = InferenceGate(1), []
    cancel = Cancellation()
    outcome = []

    def cancelled_waiter() -> None:
        try:
            with fair_share("b"), gate.slot(cancel):
                outcome.append("ran")
        except Cancelled:
            outcome.append("cancelled")

    release, threads = _queue_in_order(gate, ["a", "a", "a", "b", "b"], order, holding_key="x")
    leaver = threading.Thread(target=cancelled_waiter)
    leaver.start()
    time.sleep(0.05)
    cancel.cancel()
    leaver.join(5)
    assert outcome == ["cancelled"] and len(gate._waiting["b"]) == 2
    release.set()
    for t in threads:
        t.join(10)
    assert order == ["a0", "b3", "a1", "b4", "a2"] and gate.in_use == 0


def test_the_describer_gates_its_backend_and_reports_the_wait(fp32_model):
    describer = Describer.open(fp32_model, short_side=64)
    assert describer.gate.slots == 1
    with pytest.raises(ValueError, match=r"slots must be (an int )?>= 1"):
        Describer.open(fp32_model, slots=0)
    image = np.zeros((64, 80, 3), np.uint8)
    timings: dict[str, float] = {"queue": 1.0}
    describer.run(image, ["descriptor"], timings_ms=timings)
    assert timings["queue"] >= 1.0
    inside, most, lock = 0, 0, threading.Lock()
    run = describer.backend.run

    def counting_run(*args, **kwargs):
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        try:
            time.sleep(0.01)
            return run(*args, **kwargs)
        finally:
            with lock:
                inside -= 1

    describer.backend.run = counting_run
    threads = [threading.Thread(target=describer.describe, args=(image,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1
    two = Describer.open(fp32_model, short_side=64, slots=2)
    assert two.gate.slots == 2



def test_use_is_read_as_slot_seconds_per_second_and_decays():
    from muselens.runtime.engine.gate import UseMeter

    clock = FakeClock()
    meter = UseMeter(half_life_s=2.0, clock=clock)
    for _ in range(200):  # 40 s of a client holding a slot 60 % of the time
        meter.charge("a", 0.12)
        clock.now += 0.2
    assert meter.rates()["a"] == pytest.approx(0.6, rel=0.05)
    clock.now += 2.0
    assert meter.rates()["a"] == pytest.approx(0.3, rel=0.05)  # one half-life later
    clock.now += 60
    assert meter.rates() == {}  # idle: no longer active
    meter.charge(None, 5.0)
    assert meter.rates() == {}  # a client not told apart is not metered


def test_a_client_is_over_its_share_only_beside_others_and_only_when_busy():
    from muselens.runtime.engine.gate import UseMeter

    clock = FakeClock()
    meter = UseMeter(half_life_s=2.0, clock=clock)
    for _ in range(100):  # alone, busy all the time: never over
        meter.charge("flood", 0.2)
        clock.now += 0.2
    assert not meter.over_share("flood")
    for _ in range(100):  # a good client joins: 1 call of 0.1 s every 0.2 s ...
        meter.charge("flood", 0.2)
        meter.charge("good", 0.1)
        clock.now += 0.2
    assert meter.over_share("flood") and not meter.over_share("good")  # 1.0 against 0.5
    assert not meter.over_share(None) and not meter.over_share("stranger")
    for _ in range(100):  # two equal clients: neither is over
        meter.charge("flood", 0.1)
        meter.charge("good", 0.1)
        clock.now += 0.2
    assert not meter.over_share("flood") and not meter.over_share("good")


def test_a_light_client_is_never_over_however_lighter_the_others():
    from muselens.runtime.engine.gate import MIN_OVER_RATE, UseMeter

    clock = FakeClock()
    meter = UseMeter(half_life_s=2.0, clock=clock)
    for _ in range(100):
        meter.charge("a", 0.2 * MIN_OVER_RATE * 0.8)
        meter.charge("b", 0.2 * 0.05)
        clock.now += 0.2
    assert not meter.over_share("a")


def test_the_gate_charges_the_time_a_slot_was_held_to_its_client():
    from muselens.runtime.engine.gate import UseMeter

    meter = UseMeter(half_life_s=1.0)
    gate = InferenceGate(1, meter=meter)
    with fair_share("cam-7"), gate.slot():
        time.sleep(0.05)
    with gate.slot():  # nobody in particular: not metered
        time.sleep(0.05)
    rates = meter.rates()
    assert set(rates) == {"cam-7"}
    assert rates["cam-7"] / np.log(2) == pytest.approx(0.05, abs=0.03)  # ~the seconds held (a second ago)


# -- every core when alone, one core beside other work --------------------------------------------


@contextmanager
def other_work_going_on() -> Iterator[None]:
    """Another thread's work counted by ACTIVITY for the ``with`` body."""
    started, release = threading.Event(), threading.Event()

    def work():
        with ACTIVITY.busy():
            started.set()
            release.wait(5)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert started.wait(5)
        yield
    finally:
        release.set()
        worker.join()


def test_whole_claims_every_slot_only_alone_and_with_nothing_else_going_on():
    with pytest.raises(TypeError, match="whole must be a bool"):
        InferenceGate(2, whole="yes")
    gate = InferenceGate(2, meter=None, whole=True)
    with gate.claim() as (_, held):
        assert held == 2 and gate.in_use == 2
    assert gate.in_use == 0
    with gate.slot():  # a plain slot is one core, and the next claim finds the gate not empty
        with gate.claim() as (_, held):
            assert held == 1 and gate.in_use == 2
    with ACTIVITY.busy():  # the caller's own call does not count against it ...
        with gate.claim() as (_, held):
            assert held == 2
    with other_work_going_on():
        with gate.claim() as (_, held):  # ... another's does
            assert held == 1
        with InferenceGate(2, meter=None).claim() as (_, held):  # a gate without whole: always one
            assert held == 1
    assert ACTIVITY.others() == 0


def test_waiters_get_one_core_each_and_run_side_by_side():
    gate = InferenceGate(2, meter=None, whole=True)
    held_by, inside, most, lock = [], 0, 0, threading.Lock()
    first_in, release = threading.Event(), threading.Event()

    def run(hold: bool):
        nonlocal inside, most
        with gate.claim() as (_, held):
            with lock:
                held_by.append(held)
                inside += 1
                most = max(most, inside)
            if hold:
                first_in.set()
                release.wait(5)
            else:
                time.sleep(0.05)
            with lock:
                inside -= 1

    first = threading.Thread(target=run, args=(True,))
    first.start()
    assert first_in.wait(5)
    others = [threading.Thread(target=run, args=(False,)) for _ in range(3)]
    for t in others:
        t.start()
    time.sleep(0.05)
    release.set()
    for t in [first, *others]:
        t.join()
    assert held_by[0] == 2 and held_by[1:] == [1, 1, 1]  # the first ran alone; the others queued behind it
    assert most == 2 and gate.in_use == 0  # two one-core runs at once, never more than the cores


def test_the_describer_runs_one_thread_beside_other_work(fp32_model):
    describer = Describer.open(fp32_model, short_side=64, adaptive=True)
    assert describer.gate.whole and describer.gate.slots == describer.backend.parallelism
    assert Describer.open(fp32_model, short_side=64, adaptive=True, slots=1).gate.whole is False
    assert Describer.open(fp32_model, short_side=64).backend.one_thread_session is None
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), np.uint8)
    alone = describer.describe(image)
    sessions = []
    run = describer.backend.run
    describer.backend.run = lambda *a, **kw: sessions.append(kw.get("one_thread", False)) or run(*a, **kw)
    with other_work_going_on():
        beside = describer.describe(image)
    describer.describe(image)
    if describer.gate.slots > 1:
        assert sessions == [True, False]
        np.testing.assert_allclose(beside, alone, atol=1e-5)  # the same graph on one thread


def test_beside_other_active_clients_one_client_holds_at_most_its_share_of_the_cores():
    """A client with calls always waiting took every core that freed while another was between
    calls, and the other's next run waited for one of its runs. Beside one other active client it
    now holds at most half the cores; alone it has them all."""
    from muselens.runtime.engine.gate import UseMeter

    meter = UseMeter(half_life_s=2.0)
    gate = InferenceGate(2, meter=meter, whole=True)
    meter.charge("flood", 1.0)
    assert gate.share() == 2  # alone
    with fair_share("flood"), gate.slot(), gate.slot():  # both cores (not waited for: alone)
        assert gate.in_use == 2
    meter.charge("good", 0.5)  # another client is active now
    assert gate.share() == 1 and InferenceGate(2, meter=meter).share() == 2  # only a gate of cores
    second_in, release = threading.Event(), threading.Event()

    def flood_second() -> None:
        with fair_share("flood"), gate.slot():
            second_in.set()

    with fair_share("flood"), gate.slot():
        waiter = threading.Thread(target=flood_second)
        waiter.start()
        assert not second_in.wait(0.2) and gate.in_use == 1  # a core is free, but kept for the others
        with fair_share("good"), gate.slot() as waited_ms:  # the other client finds it at once
            assert waited_ms < 100 and gate.in_use == 2
    waiter.join(5)  # its own core freed: the flood's second run goes on
    assert second_in.is_set() and gate.in_use == 0
    assert InferenceGate(2, meter=None, whole=True).share() == 2  # nobody metered: no shares

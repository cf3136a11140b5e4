"""How many inferences one backend runs at once, and who waits.

A server takes many calls at once, but its engine should not run them all at once: on a CPU
one ONNX Runtime run already spreads over every core (intra-op threads), so more concurrent
runs than cores add no throughput, only sets of activations -- and the memory arena keeps the
high-water mark of every combination of concurrent input shapes it has seen. A server's CPU
gate therefore counts cores (``whole``): one run over all of them when nothing else is going
on, one run per core beside other work (:mod:`muselens.runtime.engine.activity`), and the
arena is warmed for that at load. A native TensorRT backend has one execution context, which
must never be entered twice. The gate bounds the runs in flight; a
caller waiting for a slot gives up as soon as its call is cancelled (deadline passed, client
left), and the time it waited is reported as the frame's ``queue`` time, not as inference.

Who gets a freed slot is fair between clients: waiters are grouped by the key the caller set
with :func:`fair_share` (the server sets the client's token), and the slot goes to the longest
waiter of the key served least recently. One client with many calls waiting (a flood of
unary calls) then delays another client's call by at most the runs already in flight, not by
its whole queue, which once multiplied a good client's latency by 20.

Turns alone do not bound what a client's work costs the others: a slot, once granted, runs to
the end, and a client that keeps every gate busy makes each of another's calls wait for one of
its runs per gate (a geometric verification is ~95 ms on 2 cores). Every gate therefore charges
the time a slot was held to its key in :data:`CLIENT_USE`, and the service asks
:meth:`UseMeter.over_share` before optional work (verification): a client over its share of
the box while others use it too has that work deferred, never refused, and keeps its answers.

Nor do turns bound how many cores one client holds at once. A client with calls always waiting
takes every core that frees while another client is between calls, so the other's next run or
verification waits for one of its runs and then shares the cores with the rest (a good client's
verification took 57 -> 160 ms under ``bench abuse``'s unary_flood). A gate that counts cores
(``whole``) therefore gives one client at most its share of them, the cores divided by the
clients active now (:meth:`UseMeter.rates`), while others are active: a core is kept for them.
Alone, a client has every core, as before.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from muselens.core import checks
from muselens.runtime.engine.activity import ACTIVITY
from muselens.runtime.engine.cancel import Cancellation, Cancelled

# Runs in flight per backend unless configured: one on a CPU (each run uses every core; a
# server's Describer counts cores instead, see InferenceGate's ``whole``) and for native TensorRT
# (one execution context); two on ONNX Runtime's GPU providers, so the host-side work of one run
# overlaps the GPU work of the other.
DEFAULT_SLOTS = {"ort-cpu": 1, "ort-cuda": 2, "ort-tensorrt": 2, "tensorrt": 1}
MAX_SLOTS = {"tensorrt": 1}
# Whose call this thread is running (None: nobody in particular); the gate is fair between keys.
_SHARE_KEY: ContextVar[Hashable | None] = ContextVar("muselens_fair_share_key", default=None)
# Keys whose last service the gate remembers (the least recently used are forgotten first).
REMEMBERED_KEYS = 4096


@contextmanager
def fair_share(key: Hashable | None) -> Iterator[None]:
    """Inside the block, this thread's waits for an inference slot count as ``key``'s."""
    token = _SHARE_KEY.set(key)
    try:
        yield
    finally:
        _SHARE_KEY.reset(token)


def slots_for(backend: str, slots: int | None = None) -> int:
    """The gate size for ``backend``: ``slots`` checked against what the backend allows, or its default."""
    if slots is None:
        return DEFAULT_SLOTS.get(backend, 1)
    slots = checks.positive_int(slots, "inference slots")
    limit = MAX_SLOTS.get(backend)
    if limit is not None and slots > limit:
        raise ValueError(f"backend {backend!r} runs at most {limit} inference(s) at once (one execution "
                         f"context), got {slots}")
    return slots


# A client's use (seconds a gate's slot was held per second) decays with this half-life: recent
# enough to catch a flood within a second or two, long enough not to flap frame by frame.
USE_HALF_LIFE_S = 2.0
# Over its share: more than this many times the mean use of the clients active now ...
OVER_SHARE = 1.25
# ... and busy at least this share of the time: a light client is never over, however few the others.
MIN_OVER_RATE = 0.5
# Below this rate a client no longer counts as active.
ACTIVE_RATE = 0.02


class UseMeter:
    """Each client's recent use of the gated resources: seconds it held a slot (any gate: decode,
    inference, verification), decayed with ``half_life_s``, read as slot-seconds per second."""

    def __init__(self, half_life_s: float = USE_HALF_LIFE_S, clock=time.monotonic):
        self.half_life_s = checks.number(half_life_s, "half_life_s", low=1e-3)
        self._clock = clock
        self._lock = threading.Lock()
        self._use: dict[Hashable, tuple[float, float]] = {}  # key -> (decayed seconds, when)

    def _decayed(self, value: float, since: float, now: float) -> float:
        return value * 2.0 ** (-(now - since) / self.half_life_s)

    def charge(self, key: Hashable | None, seconds: float) -> None:
        """``key`` held a slot for ``seconds`` (None: a client not told apart, not metered)."""
        if key is None or not seconds > 0:
            return
        now = self._clock()
        with self._lock:
            value, since = self._use.get(key, (0.0, now))
            self._use[key] = (self._decayed(value, since, now) + seconds, now)
            if len(self._use) > REMEMBERED_KEYS:  # forget the idlest
                for k in sorted(self._use, key=lambda k: self._use[k][1])[:len(self._use) - REMEMBERED_KEYS]:
                    del self._use[k]

    def rates(self) -> dict[Hashable, float]:
        """Slot-seconds per second of every client active now (a steady rate r reads as r)."""
        now = self._clock()
        scale = math.log(2.0) / self.half_life_s
        with self._lock:
            rates = {k: self._decayed(v, t, now) * scale for k, (v, t) in self._use.items()}
        return {k: r for k, r in rates.items() if r >= ACTIVE_RATE}

    def over_share(self, key: Hashable | None) -> bool:
        """Whether ``key`` uses more than its share of the box while other clients use it too:
        over :data:`OVER_SHARE` times the active clients' mean, and busy :data:`MIN_OVER_RATE`
        of the time. A client alone, or anonymous, never is."""
        if key is None:
            return False
        rates = self.rates()
        mine = rates.get(key, 0.0)
        if len(rates) < 2 or mine < MIN_OVER_RATE:
            return False
        return mine > OVER_SHARE * sum(rates.values()) / len(rates)

    def clear(self) -> None:
        with self._lock:
            self._use.clear()


# The process's meter, charged by every gate: one server per process.
CLIENT_USE = UseMeter()


def current_key() -> Hashable | None:
    """The client this thread works for (see :func:`fair_share`)."""
    return _SHARE_KEY.get()


class _Waiter:
    __slots__ = ("key", "granted", "units")

    def __init__(self, key: Hashable | None):
        self.key, self.granted, self.units = key, False, 1


class InferenceGate:
    """At most ``slots`` holders at once; a cancelled waiter leaves with :class:`Cancelled`; a
    freed slot goes to the key (see :func:`fair_share`) served least recently, first come
    first served within a key.

    ``whole``: the slots are cores, and a holder that finds the gate empty, nobody waiting and
    no other work counted by :data:`~muselens.runtime.engine.activity.ACTIVITY` takes them all
    (:meth:`claim` says how many it got): one run over every core when alone, one core per run
    beside anything else."""

    def __init__(self, slots: int, meter: UseMeter | None = CLIENT_USE, *, whole: bool = False):
        self.slots = checks.positive_int(slots, "slots")
        self.meter = meter
        self.whole = checks.flag(whole, "whole")
        self._free = slots
        self._changed = threading.Condition()
        self._waiting: dict[Hashable | None, deque[_Waiter]] = {}
        self._served: OrderedDict[Hashable | None, int] = OrderedDict()  # key -> when last granted
        self._held: Counter[Hashable | None] = Counter()  # key -> slots it holds now
        self._clock = itertools.count()

    @property
    def in_use(self) -> int:
        with self._changed:
            return self.slots - self._free

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def share(self) -> int:
        """Slots one client may hold at once: all of them, except in a gate of cores while other
        clients are active, where each has the cores divided by the active clients (rounded up)."""
        if not self.whole or self.meter is None or self.slots == 1:
            return self.slots
        return max(1, math.ceil(self.slots / max(1, len(self.meter.rates()))))

    def _release(self, waiter: _Waiter) -> None:
        """``waiter``'s slots back (lock held)."""
        self._free += waiter.units
        self._held[waiter.key] -= waiter.units
        if self._held[waiter.key] <= 0:
            del self._held[waiter.key]

    def _grant(self, waiter: _Waiter) -> None:
        """Give ``waiter`` a slot (lock held)."""
        waiter.granted = True
        self._free -= waiter.units
        self._held[waiter.key] += waiter.units
        self._served[waiter.key] = next(self._clock)
        self._served.move_to_end(waiter.key)
        while len(self._served) > REMEMBERED_KEYS:
            self._served.popitem(last=False)

    def _dispatch(self) -> None:
        """Hand free slots to waiters, least recently served key first (lock held)."""
        granted = False
        share = self.share() if self._free and self._waiting else self.slots
        while self._free and self._waiting:
            eligible = [k for k in self._waiting if self._held[k] < share]
            if not eligible:  # each waiting client holds its share: a slot of its own frees first
                break
            key = min(eligible, key=lambda k: self._served.get(k, -1))
            queue = self._waiting[key]
            self._grant(queue.popleft())
            if not queue:
                del self._waiting[key]
            granted = True
        if granted:
            self._changed.notify_all()

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter gives up (lock held): out of its queue, or its slot back if it had one."""
        if waiter.granted:
            self._release(waiter)
            self._dispatch()
            return
        queue = self._waiting.get(waiter.key)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._waiting[waiter.key]

    @contextmanager
    def slot(self, cancel: Cancellation | None = None) -> Iterator[float]:
        """Hold one slot for the ``with`` body; yields the milliseconds spent waiting for it."""
        with self.claim(cancel, whole=False) as (waited_ms, _):
            yield waited_ms

    @contextmanager
    def claim(self, cancel: Cancellation | None = None, *, whole: bool | None = None
              ) -> Iterator[tuple[float, int]]:
        """Hold slots for the ``with`` body; yields (milliseconds waited, slots held): every slot
        when ``whole`` (default: the gate's) and the gate is empty with no other work going on,
        else one."""
        whole = self.whole if whole is None else whole
        start = time.perf_counter()
        waiter = _Waiter(_SHARE_KEY.get())
        if cancel is not None:
            cancel.on_cancel(self._wake)
        try:
            with self._changed:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("cancelled while waiting for an inference slot")
                if self._free and not self._waiting and self._held[waiter.key] < self.share():
                    if whole and self._free == self.slots and ACTIVITY.others() == 0:
                        waiter.units = self.slots
                    self._grant(waiter)
                else:
                    self._waiting.setdefault(waiter.key, deque()).append(waiter)
                    self._dispatch()
                while not waiter.granted and not (cancel is not None and cancel.cancelled):
                    self._changed.wait()
                if cancel is not None and cancel.cancelled:
                    self._leave(waiter)
                    raise Cancelled("cancelled while waiting for an inference slot")
        finally:
            if cancel is not None:
                cancel.remove(self._wake)
        granted = time.perf_counter()
        try:
            yield (granted - start) * 1e3, waiter.units
        finally:
            with self._changed:
                self._release(waiter)
                self._dispatch()
            if self.meter is not None:
                self.meter.charge(waiter.key, time.perf_counter() - granted)

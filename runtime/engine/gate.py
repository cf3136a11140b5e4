"""How many inferences one backend runs at once, and who waits.

A server takes many calls at once, but its engine should not run them all at once: on a CPU
one ONNX Runtime run already spreads over every core (intra-op threads), so a second
concurrent run adds no throughput, only a second set of activations -- and the memory arena
keeps the high-water mark of every combination of concurrent input shapes it has seen, so
the server's RSS creeps up for minutes under mixed traffic. A native TensorRT backend has one
execution context, which must never be entered twice. The gate bounds the runs in flight; a
caller waiting for a slot gives up as soon as its call is cancelled (deadline passed, client
left), and the time it waited is reported as the frame's ``queue`` time, not as inference.

Who gets a freed slot is fair between clients: waiters are grouped by the key the caller set
with :func:`fair_share` (the server sets the client's token), and the slot goes to the longest
waiter of the key served least recently. One client with many calls waiting (a flood of
unary calls) then delays another client's call by at most the runs already in flight, not by
its whole queue, which once multiplied a good client's latency by 20.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from muselens.core import checks
from muselens.runtime.engine.cancel import Cancellation, Cancelled

# Runs in flight per backend unless configured: one on a CPU (each run uses every core) and
# for native TensorRT (one execution context); two on ONNX Runtime's GPU providers, so the
# host-side work of one run overlaps the GPU work of the other.
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


class _Waiter:
    __slots__ = ("key", "granted")

    def __init__(self, key: Hashable | None):
        self.key, self.granted = key, False


class InferenceGate:
    """At most ``slots`` holders at once; a cancelled waiter leaves with :class:`Cancelled`; a
    freed slot goes to the key (see :func:`fair_share`) served least recently, first come
    first served within a key."""

    def __init__(self, slots: int):
        self.slots = checks.positive_int(slots, "slots")
        self._free = slots
        self._changed = threading.Condition()
        self._waiting: dict[Hashable | None, deque[_Waiter]] = {}
        self._served: OrderedDict[Hashable | None, int] = OrderedDict()  # key -> when last granted
        self._clock = itertools.count()

    @property
    def in_use(self) -> int:
        with self._changed:
            return self.slots - self._free

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _grant(self, waiter: _Waiter) -> None:
        """Give ``waiter`` a slot (lock held)."""
        waiter.granted = True
        self._free -= 1
        self._served[waiter.key] = next(self._clock)
        self._served.move_to_end(waiter.key)
        while len(self._served) > REMEMBERED_KEYS:
            self._served.popitem(last=False)

    def _dispatch(self) -> None:
        """Hand free slots to waiters, least recently served key first (lock held)."""
        granted = False
        while self._free and self._waiting:
            key = min(self._waiting, key=lambda k: self._served.get(k, -1))
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
            self._free += 1
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
        start = time.perf_counter()
        waiter = _Waiter(_SHARE_KEY.get())
        if cancel is not None:
            cancel.on_cancel(self._wake)
        try:
            with self._changed:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("cancelled while waiting for an inference slot")
                if self._free and not self._waiting:
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
        try:
            yield (time.perf_counter() - start) * 1e3
        finally:
            with self._changed:
                self._free += 1
                self._dispatch()

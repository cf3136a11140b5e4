"""How many inferences one backend runs at once, and who waits.

A server takes many calls at once, but its engine should not run them all at once: on a CPU
one ONNX Runtime run already spreads over every core (intra-op threads), so a second
concurrent run adds no throughput, only a second set of activations -- and the memory arena
keeps the high-water mark of every combination of concurrent input shapes it has seen, so
the server's RSS creeps up for minutes under mixed traffic. A native TensorRT backend has one
execution context, which must never be entered twice. The gate bounds the runs in flight; a
caller waiting for a slot gives up as soon as its call is cancelled (deadline passed, client
left), and the time it waited is reported as the frame's ``queue`` time, not as inference.
"""

from __future__ import annotations

from muselens.core import checks
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from muselens.runtime.engine.cancel import Cancellation, Cancelled

# Runs in flight per backend unless configured: one on a CPU (each run uses every core) and
# for native TensorRT (one execution context); two on ONNX Runtime's GPU providers, so the
# host-side work of one run overlaps the GPU work of the other.
DEFAULT_SLOTS = {"ort-cpu": 1, "ort-cuda": 2, "ort-tensorrt": 2, "tensorrt": 1}
MAX_SLOTS = {"tensorrt": 1}


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


class InferenceGate:
    """At most ``slots`` holders at once; a cancelled waiter leaves with :class:`Cancelled`."""

    def __init__(self, slots: int):
        self.slots = checks.positive_int(slots, "slots")
        self._free = slots
        self._changed = threading.Condition()

    @property
    def in_use(self) -> int:
        with self._changed:
            return self.slots - self._free

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    @contextmanager
    def slot(self, cancel: Cancellation | None = None) -> Iterator[float]:
        """Hold one slot for the ``with`` body; yields the milliseconds spent waiting for it."""
        start = time.perf_counter()
        if cancel is not None:
            cancel.on_cancel(self._wake)
        try:
            with self._changed:
                while self._free == 0 and not (cancel is not None and cancel.cancelled):
                    self._changed.wait()
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("cancelled while waiting for an inference slot")
                self._free -= 1
        finally:
            if cancel is not None:
                cancel.remove(self._wake)
        try:
            yield (time.perf_counter() - start) * 1e3
        finally:
            with self._changed:
                self._free += 1
                self._changed.notify_all()

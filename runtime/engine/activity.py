"""What else the process is working on right now: whether an inference may take every core.

On a CPU one ONNX Runtime run spreads each operator over every core, and waits at the end of
each for its slowest thread. Alone on the box that is the fastest way to answer one frame.
Beside other work it is the slowest: whenever the OS gives one of its cores to something else (a
verification, another client's decode, an attacker's refused calls), every operator waits for
that thread's next turn. Measured on 2 cores (``benchmarks/results/streams-cpu`` and ``abuse-cpu``): four
30 FPS cameras were answered 24-29 frames a second in total with one-core runs beside each other
against 15 with two-core runs one at a time; one camera's p99 fell from 145-173 to 124-133 ms (its frames beside a
background verification); and a good client's p99 under the abuse bench's attacks fell by a
quarter to a third under three of them.

So the work that competes for the cores for longer than a frame is counted here (unary calls,
enrolments, background verifications), and the inference gate gives a run every core only when
nothing but its own call is counted and no other run is in flight
(:class:`~muselens.runtime.engine.gate.InferenceGate`, ``whole``). A stream's decode (2-3 ms) is
not counted: counted, it made a third of one camera's runs one-core runs (a quarter without it,
those beside a verification) for a few milliseconds of overlap each.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Units this thread's own call holds: its inference does not compete with itself.
_OWN: ContextVar[int] = ContextVar("muselens_activity_own", default=0)


class Activity:
    """A count of work in progress, and how much of it is the calling thread's own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Count the ``with`` body as work in progress."""
        with self._lock:
            self._count += 1
        token = _OWN.set(_OWN.get() + 1)
        try:
            yield
        finally:
            _OWN.reset(token)
            with self._lock:
                self._count -= 1

    @property
    def count(self) -> int:
        return self._count

    def others(self) -> int:
        """Work in progress that is not the calling thread's own."""
        return max(0, self._count - _OWN.get())


ACTIVITY = Activity()


class RunTally:
    """Inference runs by the cores they took, ``all`` (nothing else going on) or ``one`` (beside
    other work), for the metrics endpoint: how often a server's cores were shared."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"all": 0, "one": 0}

    def record(self, every_core: bool) -> None:
        with self._lock:
            self._counts["all" if every_core else "one"] += 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


RUNS = RunTally()

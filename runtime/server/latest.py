"""Latest frame wins: a one-slot mailbox between a stream's reader and its worker.

A camera sends 30 frames a second whatever the server manages; queueing them would make every
answer later than the one before. The reader thread puts each arriving frame in the slot,
replacing (and counting) one the worker had not taken yet; the worker always takes the newest.
Latency stays one frame deep however fast the client sends.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Arrival(Generic[T]):
    item: T
    received: float  # time.perf_counter() at arrival


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Arrival[T] | None = None
        self._closed = False
        self.dropped = 0
        self.received = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._closed:
                return
            if self._item is not None:
                self.dropped += 1
            self._item = Arrival(item, time.perf_counter())
            self.received += 1
            self._cond.notify()

    def close(self) -> None:
        """No more frames will come (the client half-closed, left, or the call ended)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> Arrival[T] | None:
        """The newest waiting frame; None once closed and empty (or after ``timeout`` seconds)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            item, self._item = self._item, None
            return item

    @property
    def closed(self) -> bool:
        return self._closed

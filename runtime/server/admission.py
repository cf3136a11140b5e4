"""How many streams the server holds open at once, in all and per client token.

A gRPC sync server runs every call on a worker thread of one pool, and a stream holds its
worker for as long as it stays open, frames or not. Sixteen streams that send nothing once
took all sixteen workers: a good ``Recognize``, the health check and ``Admin.LoadBundle``
then waited until their deadlines. Streams therefore get at most ``max_streams`` workers
(by default three quarters of them), so unary calls, health and admin always find one; a
stream beyond the cap, or beyond a token's own cap, is refused at once (RESOURCE_EXHAUSTED)
instead of waiting for a worker.
"""

from __future__ import annotations

import threading
from collections import Counter


def default_max_streams(workers: int) -> int:
    """Three quarters of the workers (at least one), the rest kept for unary, health and admin."""
    return max(1, workers * 3 // 4)


class StreamAdmission:
    """Counts open streams; :meth:`enter` says whether one more may open, :meth:`leave` frees it."""

    def __init__(self, max_streams: int, max_per_token: int | None = None):
        for name, value in (("max_streams", max_streams), ("max_per_token", max_per_token)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.max_streams = max_streams
        self.max_per_token = max_per_token
        self._lock = threading.Lock()
        self._open = 0
        self._by_token: Counter[str] = Counter()

    def enter(self, token: str | None) -> str | None:
        """Admit a stream of ``token`` (None: no token) and return None, or say why not."""
        with self._lock:
            if self._open >= self.max_streams:
                return f"the server holds its maximum of {self.max_streams} open streams"
            if token is not None and self.max_per_token is not None and self._by_token[token] >= self.max_per_token:
                return f"this client token holds its maximum of {self.max_per_token} open streams"
            self._open += 1
            if token is not None:
                self._by_token[token] += 1
            return None

    def leave(self, token: str | None) -> None:
        with self._lock:
            self._open -= 1
            if token is not None:
                self._by_token[token] -= 1
                if not self._by_token[token]:
                    del self._by_token[token]

    @property
    def open(self) -> int:
        return self._open

"""How many streams and calls the server holds at once, in all and per client token.

A gRPC sync server runs every call on a worker thread of one pool, and a stream holds its
worker for as long as it stays open, frames or not. Sixteen streams that send nothing once
took all sixteen workers: a good ``Recognize``, the health check and ``Admin.LoadBundle``
then waited until their deadlines. Streams therefore get at most ``max_streams`` workers
(by default three quarters of them), so unary calls, health and admin always find one; a
stream beyond the cap, or beyond a token's own cap, is refused at once (RESOURCE_EXHAUSTED)
instead of waiting for a worker.

Unary calls: gRPC refuses those beyond ``max_pending_calls`` (running or waiting for a worker)
at once, but one client with hundreds of calls in flight filled that queue by itself, and a
good client's calls were refused or waited behind all of them. So a client token may have
at most ``max_calls_per_token`` calls running (by default a quarter of the workers); more are
refused at once, which frees their place in gRPC's queue straight away, and the inference
gate serves tokens in turn (:func:`muselens.runtime.engine.gate.fair_share`). Clients are
told apart only by valid client tokens: on a server without them every call is anonymous
and only the server-wide caps hold.
"""

from __future__ import annotations

import threading
from collections import Counter


def default_max_streams(workers: int) -> int:
    """Three quarters of the workers (at least one), the rest kept for unary, health and admin."""
    return max(1, workers * 3 // 4)


def default_max_calls_per_token(workers: int) -> int:
    """A quarter of the workers (at least one): four clients' worth of calls can run at once."""
    return max(1, workers // 4)


class TokenAdmission:
    """Counts what is open at once (streams, or calls), in all and per client token;
    :meth:`enter` says whether one more may open, :meth:`leave` frees it."""

    def __init__(self, max_open: int, max_per_token: int | None = None, what: str = "open streams"):
        for name, value in (("max_open", max_open), ("max_per_token", max_per_token)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.max_open = max_open
        self.max_per_token = max_per_token
        self.what = what
        self._lock = threading.Lock()
        self._open = 0
        self._by_token: Counter[str] = Counter()

    def enter(self, token: str | None) -> str | None:
        """Admit one for ``token`` (None: a client not told apart) and return None, or say why not."""
        with self._lock:
            if self._open >= self.max_open:
                return f"the server holds its maximum of {self.max_open} {self.what}"
            if token is not None and self.max_per_token is not None and self._by_token[token] >= self.max_per_token:
                return f"this client token holds its maximum of {self.max_per_token} {self.what}"
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

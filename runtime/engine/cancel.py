"""Cancelling work in flight: the client left or its deadline passed, so stop computing for it.

A :class:`Cancellation` is handed down from the service to the inference backend; the gRPC
layer calls :meth:`Cancellation.cancel` from its callback thread and the backend aborts a run
already under way (ONNX Runtime's ``RunOptions.terminate``) instead of finishing work nobody
will read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Cancelled(Exception):
    """The work was cancelled before it finished."""


class Cancellation:
    """A thread-safe one-way flag with callbacks run once, on cancel (or at once if already cancelled)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)
                return
        callback()

    def remove(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancelled (call between stages)."""
        if self._cancelled:
            raise Cancelled("cancelled")

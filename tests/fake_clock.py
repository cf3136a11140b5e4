"""A clock tests move by hand (``clock.now += 2.0``), for code that takes ``clock=``."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

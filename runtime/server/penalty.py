"""Clients that keep being refused: held, then refused, at the door, for a while.

Two kinds of refusal repeat as fast as a client sends, and each still costs the server:

* **frames refused for their cost** (a progressive JPEG of thousands of scans, a header that
  claims 24 MP): refused before decoding, but received into Python and parsed first. Under
  ``bench abuse``'s scan_bomb four senders had ~290 such frames refused a second, ~2.5 ms of the
  GIL each (receiving 825 KB, parsing it, counting its scans), and a good client's geometric
  verification, which wins the GIL back after each of its ~40 OpenCV calls, went from 57 to
  200 ms;
* **calls over the client's cap** of calls in flight: a client with hundreds in flight (the
  unary_flood) is refused hundreds of times a second, and the calls it has admitted keep
  taking their turns at the cores.

Refusing faster only lets such a client send faster. So a client token refused ``limit`` times
within ``window_s`` for one of these (``limits``: 8 costly frames, 64 calls over the cap) is
penalised for ``penalty_s``: its calls are then held (at most ``hold_s``, no CPU, within its
calls in flight) and refused before gRPC reads their request, and a stream of it that sends
another costly frame is closed. A client sending in a loop then costs a few refusals a second,
and its status says why and for how long. A client that retries as asked ("retry later") with
any backoff is refused a handful of times, far from either limit.

Only clients told apart (by a valid client token) are penalised: on a server without tokens
every caller is the same client, and a penalty would refuse everyone.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

from muselens.core import checks

# Frame refusals that say the frame was made to cost (decode work, memory), not that it is broken.
COSTLY_REASONS = frozenset({"too_many_scans", "too_large", "too_many_pixels", "side_too_long"})
# A call refused because its client (or the server) holds its maximum of calls in flight.
CAPACITY = "capacity"
# Refusals within the window before a client is penalised (``muselens serve --penalty-after``,
# ``--flood-penalty-after``).
DEFAULT_PENALTY_AFTER = 8
DEFAULT_FLOOD_PENALTY_AFTER = 64
# The reason slug a penalised client's refusals start with (``"<reason>: ..."``, as every refusal's).
PENALISED = "penalised"
# Tokens remembered at once (the most recently refused are kept): client tokens come from a file.
REMEMBERED_TOKENS = 1024
_WHY = {"cost": "frames of this client were refused within {window} s for their cost (the last: {reason})",
        CAPACITY: "calls of this client were refused within {window} s over its calls in flight"}


def _kind(reason: str) -> str | None:
    return "cost" if reason in COSTLY_REASONS else CAPACITY if reason == CAPACITY else None


class RefusalPenalty:
    """Refusals per client token and kind (costly frames, calls over the cap), and which tokens
    are penalised until when. A limit of 0 never penalises that kind."""

    def __init__(self, limit: int = DEFAULT_PENALTY_AFTER, flood_limit: int = DEFAULT_FLOOD_PENALTY_AFTER,
                 window_s: float = 2.0, penalty_s: float = 5.0, hold_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.limits = {"cost": checks.integer(limit, "limit", low=0),
                       CAPACITY: checks.integer(flood_limit, "flood_limit", low=0)}
        self.window_s = checks.number(window_s, "window_s", low=0, low_open=True)
        self.penalty_s = checks.number(penalty_s, "penalty_s", low=0, low_open=True)
        self.hold_s = checks.number(hold_s, "hold_s", low=0)
        self._clock = clock
        self._lock = threading.Lock()
        self._refused: dict[tuple[Hashable, str], deque[float]] = {}  # (token, kind) -> its last refusals
        self._until: dict[Hashable, tuple[float, str]] = {}  # token -> (penalised until, why)

    @property
    def active(self) -> bool:
        """Whether any kind of refusal can get a client penalised."""
        return any(self.limits.values())

    def record(self, token: Hashable | None, reason: str) -> bool:
        """A call of ``token`` was refused for ``reason`` (a frame's reason slug, or
        :data:`CAPACITY`); whether the token is penalised now."""
        kind = _kind(reason)
        if token is None or kind is None or not self.limits[kind]:
            return token is not None and self.remaining(token) is not None
        limit, now = self.limits[kind], self._clock()
        with self._lock:
            times = self._refused.pop((token, kind), None) or deque(maxlen=limit)
            times.append(now)
            self._refused[(token, kind)] = times  # re-inserted: the dict's order is least recently refused first
            if len(times) == limit and now - times[0] <= self.window_s:
                why = f"{limit} " + _WHY[kind].format(window=f"{self.window_s:g}", reason=reason)
                self._until[token] = (now + self.penalty_s, why)
                times.clear()
            while len(self._refused) > REMEMBERED_TOKENS:
                del self._refused[next(iter(self._refused))]
            for ended in [t for t, (until, _) in self._until.items() if until <= now]:
                del self._until[ended]
            return token in self._until

    def remaining(self, token: Hashable | None) -> tuple[float, str] | None:
        """(seconds of penalty left, why) for ``token``, or None when it is not penalised."""
        if token is None:
            return None
        with self._lock:
            entry = self._until.get(token)
            if entry is None:
                return None
            left = entry[0] - self._clock()
            if left <= 0:
                del self._until[token]
                return None
            return left, entry[1]

    def message(self, token: Hashable | None) -> str | None:
        """The refusal's details for a penalised ``token`` (None when it is not penalised)."""
        remaining = self.remaining(token)
        if remaining is None:
            return None
        left, why = remaining
        return f"{PENALISED}: {why}; its calls are refused for {left:.1f} s more; retry then"

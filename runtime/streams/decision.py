"""What one frame decided, and what a stream shows after smoothing."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Decision(str, Enum):
    """A recognition decision; the values are the strings the service reports."""

    ARTWORK = "artwork"
    NO_ARTWORK = "no_artwork"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class SmoothedDecision:
    """A stream's answer after a frame.

    ``ARTWORK``: an artwork is shown (``instance_id``). ``NO_ARTWORK``: for ``min_frames``
    frames no candidate was above the threshold. ``UNCERTAIN``: neither is confirmed yet.
    ``instance_id`` is set only for ``ARTWORK``. ``score`` is the smoothed score of the shown
    artwork, else of the best candidate (the floor when there is none). ``stable_frames``
    counts the frames, this one included, for which ``(decision, instance_id)`` has not changed.
    """

    decision: Decision
    instance_id: str | None
    score: float
    stable_frames: int

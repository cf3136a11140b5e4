"""The tunables of per-stream smoothing, validated once when a server starts.

Scores are the recogniser's dot products of L2-normalised descriptors (cosine similarities);
margins are in the same units. The defaults suit camera streams of 10-30 frames a second:
a candidate must lead for ``min_frames = 3`` consecutive frames (100-300 ms) to be shown.

A server holds one configuration but serves bundles whose thresholds lie anywhere in [-1, 1]
(an older export wrote -1.0 for a museum without distractors): each stream's smoother gets
:meth:`SmootherConfig.for_threshold` of its bundle's threshold, never an invalid floor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from muselens.core import checks
# The floor a bundle's threshold gets lies at least this far below its exit level (threshold -
# exit_margin): a floor just under it would be valid but a vanished artwork would take ever longer
# to decay past the exit level. With the default half-life, one seen at score 1.0 falls below it
# within 7 frames even at threshold -1.0 (2.12 * 0.63 ** 7 < 0.1).
FLOOR_GAP = 0.1


@dataclass(frozen=True)
class SmootherConfig:
    """How a stream's scores are smoothed and when its shown answer may change.

    ``half_life_frames``: EMA half-life in frames, used when frames carry no timestamp (or
    ``half_life_s`` is None): ``alpha = 1 - 2 ** (-1 / half_life_frames)`` (1.5 -> 0.37).
    ``half_life_s``: EMA half-life in seconds, used between timestamped frames:
    ``alpha = 1 - 2 ** (-dt / half_life_s)``, so a slow or jittery frame rate weighs each frame
    by the time it covers, and after a long gap old evidence is forgotten.
    ``enter_margin``: a new artwork is shown only once its smoothed score exceeds
    ``threshold + enter_margin`` ... ``switch_margin``: ... and the shown one's by this much,
    both for ``min_frames`` consecutive frames. ``exit_margin``: the shown artwork is dropped
    after ``min_frames`` consecutive frames below ``threshold - exit_margin``.
    ``floor``: the score a candidate absent from a frame's top-k is taken to have (absent
    candidates decay toward it); it must lie below ``threshold - exit_margin``, and
    :meth:`for_threshold` lowers it for a low threshold.
    ``uncertain_weight``: an "uncertain" frame moves the averages this fraction of a normal
    frame (0 ignores such frames, 1 treats them as any other).
    ``max_tracked``: at most this many candidates are kept (lowest dropped), bounding memory.
    ``verified_hold_frames``: an artwork confirmed by geometric verification
    (:meth:`StreamSmoother.confirm`) is shown at once and held for this many frames, whatever
    the scores say, unless another verification says otherwise (15 frames: 0.75 s at 20 FPS,
    longer than the background verification's interval of 0.5 s and its lag, so a steadily
    verified artwork stays).
    """

    half_life_frames: float = 1.5
    half_life_s: float | None = None
    min_frames: int = 3
    enter_margin: float = 0.02
    switch_margin: float = 0.05
    exit_margin: float = 0.02
    floor: float = 0.0
    uncertain_weight: float = 0.5
    max_tracked: int = 64
    verified_hold_frames: int = 15

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("half_life_frames", "half_life_s"):
            if name == "half_life_frames" or self.half_life_s is not None:
                set_(self, name, checks.number(getattr(self, name), f"SmootherConfig.{name}", low=0, low_open=True))
        for name in ("enter_margin", "switch_margin", "exit_margin"):
            set_(self, name, checks.number(getattr(self, name), f"SmootherConfig.{name}", low=0))
        set_(self, "floor", checks.number(self.floor, "SmootherConfig.floor"))
        weight = checks.number(self.uncertain_weight, "SmootherConfig.uncertain_weight", low=0)
        if weight > 1.0:
            raise ValueError(f"SmootherConfig.uncertain_weight must be in [0, 1], got {weight}")
        set_(self, "uncertain_weight", weight)
        for name in ("min_frames", "max_tracked", "verified_hold_frames"):
            checks.positive_int(getattr(self, name), f"SmootherConfig.{name}")

    def for_threshold(self, threshold: float) -> SmootherConfig:
        """This configuration for a bundle whose "no artwork" threshold is ``threshold``: the floor
        lowered, when needed, to ``threshold - exit_margin - FLOOR_GAP``, so that it lies below the
        exit level for any threshold (a floor above it would keep a vanished artwork shown for ever).

        The configured floor is an upper bound: it is kept for thresholds high enough (the default
        0.0 for thresholds from 0.12 up), and every other field is kept as it is.
        """
        floor = min(self.floor, checks.number(threshold, "threshold") - self.exit_margin - FLOOR_GAP)
        return self if floor == self.floor else replace(self, floor=floor)


def ema_alpha(half_life: float, elapsed: float) -> float:
    """The EMA weight of a new observation after ``elapsed`` (same unit as ``half_life``).

    The old average keeps ``2 ** (-elapsed / half_life)`` of its weight: half after one half-life.
    """
    if not half_life > 0:
        raise ValueError(f"half_life must be > 0, got {half_life}")
    if not elapsed >= 0:
        raise ValueError(f"elapsed must be >= 0, got {elapsed}")
    return 1.0 - 2.0 ** (-elapsed / half_life)

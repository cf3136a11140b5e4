"""From scores to an answer: an artwork, no artwork in view, or too close to call.

* ``no_artwork`` when the best score does not exceed the bundle's calibrated threshold (tuned at
  export to a target false-accept rate; a score equal to it is rejected, as calibration counts it:
  :func:`muselens.core.metrics.calibrate_threshold` sets the threshold *at* a negative's score);
* ``uncertain`` when it clears the threshold but the runner-up artwork is within
  ``uncertain_margin`` of it: two artworks explain the frame almost equally well (a frame
  straddling two neighbouring paintings), so the app should not name either yet;
* ``artwork`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from muselens.runtime.streams.decision import Decision

__all__ = ["DEFAULT_UNCERTAIN_MARGIN", "Decision", "decide"]

DEFAULT_UNCERTAIN_MARGIN = 0.02


def decide(scores: Sequence[float], threshold: float, uncertain_margin: float = DEFAULT_UNCERTAIN_MARGIN) -> Decision:
    """The decision for scores sorted best first (at least one)."""
    if len(scores) == 0:
        raise ValueError("decide needs at least one score")
    if not uncertain_margin >= 0:
        raise ValueError(f"uncertain_margin must be >= 0, got {uncertain_margin!r}")
    best = float(scores[0])
    if best <= threshold:
        return Decision.NO_ARTWORK
    if len(scores) > 1 and best - float(scores[1]) < uncertain_margin:
        return Decision.UNCERTAIN
    return Decision.ARTWORK

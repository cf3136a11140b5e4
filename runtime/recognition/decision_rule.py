"""From scores to an answer: an artwork, no artwork in view, or too close to call.

* ``no_artwork`` when the best score does not exceed the bundle's calibrated threshold (tuned at
  export to a target false-accept rate; a score equal to it is rejected, as calibration counts it:
  :func:`muselens.core.metrics.calibrate_threshold` sets the threshold *at* a negative's score);
* ``uncertain`` when it clears the threshold but the runner-up artwork is within
  ``uncertain_margin`` of it: two artworks explain the frame almost equally well (a frame
  straddling two neighbouring paintings), so the app should not name either yet;
* ``artwork`` otherwise.

A verified answer (:mod:`muselens.runtime.verification`: a reference of the artwork fits the
frame by a plausible homography) is accepted whatever the global score: a fitted plane is far
stronger evidence against a false accept than a descriptor's similarity (no unknown painting of
mcv-paintings fitted any reference). It is ``uncertain`` when another candidate's combined
evidence (score plus fit, :func:`muselens.runtime.verification.shortlist.evidence`) comes within
``uncertain_margin`` of it: two artworks explaining the frame almost equally well. A frame
that could not be verified keeps the scores' decision: few features is no evidence of absence.
"""

from __future__ import annotations

from collections.abc import Sequence

from muselens.runtime.streams.decision import Decision
from muselens.runtime.verification import VerificationReport

__all__ = ["DEFAULT_UNCERTAIN_MARGIN", "Decision", "decide", "decide_verified"]

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


def decide_verified(decision: Decision, report: VerificationReport,
                    uncertain_margin: float = DEFAULT_UNCERTAIN_MARGIN) -> Decision:
    """The decision once verification has run: the scores' ``decision`` unless an artwork was verified."""
    if not report.verified:
        return decision
    if report.evidence - report.runner_up_evidence < uncertain_margin:
        return Decision.UNCERTAIN
    return Decision.ARTWORK

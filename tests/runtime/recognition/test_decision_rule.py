"""Scores to decisions: threshold for "no artwork", margin for "uncertain"."""

from __future__ import annotations

import pytest

from muselens.runtime.recognition.decision_rule import Decision, decide


@pytest.mark.parametrize("scores, expected", [
    ([0.5], Decision.NO_ARTWORK),
    ([0.79, 0.1], Decision.NO_ARTWORK),
    ([0.8, 0.1], Decision.NO_ARTWORK),  # at the threshold: rejected, as calibration counts it
    ([0.81, 0.1], Decision.ARTWORK),
    ([0.9, 0.89], Decision.UNCERTAIN),
    ([0.9, 0.88], Decision.ARTWORK),
    ([0.95], Decision.ARTWORK),
])
def test_decide(scores, expected):
    assert decide(scores, 0.8, 0.02 - 1e-9) is expected


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one"):
        decide([], 0.5)
    with pytest.raises(ValueError, match="uncertain_margin"):
        decide([0.9], 0.5, -1)


def test_a_negative_at_the_calibrated_threshold_is_rejected():
    """The threshold is set at a negative's score; the runtime must not accept that negative."""
    import numpy as np

    from muselens.core.metrics import calibrate_threshold

    negatives = np.linspace(0.1, 0.9, 100)
    t = calibrate_threshold(negatives, 0.01)
    accepted = sum(decide([s], t) is not Decision.NO_ARTWORK for s in negatives)
    assert accepted <= 1  # at most 1 % of 100

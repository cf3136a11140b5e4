"""Scores to decisions: threshold for "no artwork", margin for "uncertain"."""

from __future__ import annotations

import pytest

from muselens.runtime.recognition.decision import Decision, decide


@pytest.mark.parametrize("scores, expected", [
    ([0.5], Decision.NO_ARTWORK),
    ([0.79, 0.1], Decision.NO_ARTWORK),
    ([0.8, 0.1], Decision.ARTWORK),
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

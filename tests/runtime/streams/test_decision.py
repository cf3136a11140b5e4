from __future__ import annotations

import dataclasses

import pytest

from muselens.runtime.streams.decision import Decision, SmoothedDecision


def test_decisions_are_the_reported_strings():
    assert [d.value for d in Decision] == ["artwork", "no_artwork", "uncertain"]
    assert Decision("no_artwork") is Decision.NO_ARTWORK
    assert Decision.UNCERTAIN == "uncertain"
    with pytest.raises(ValueError):
        Decision("maybe")


def test_smoothed_decision_is_frozen():
    result = SmoothedDecision(Decision.ARTWORK, "a0", 0.8, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.score = 0.1  # type: ignore[misc]

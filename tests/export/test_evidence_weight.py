"""The weight of a fit against the descriptor, chosen on the museum's queries."""

from __future__ import annotations

import pytest

from muselens.export.evidence_weight import MIN_QUERIES, QueryFits, choose_weight
from muselens.runtime.bundle import load_bundle


def hub(n: int) -> list[QueryFits]:
    """A weak descriptor: a hub outscores the artwork in view, which fits with 20 inliers."""
    return [QueryFits("a", {"hub": 0.8, "a": 0.5}, {"a": 20}) for _ in range(n)]


def siblings(n: int) -> list[QueryFits]:
    """A strong descriptor: the right flavour scores clearly higher; its sibling fits better."""
    return [QueryFits("a", {"a": 0.85, "b": 0.78}, {"a": 100, "b": 400}) for _ in range(n)]


def test_a_weak_descriptor_gets_a_heavy_fit_and_a_strong_one_a_light_fit():
    weak = choose_weight(hub(30))
    assert weak["evidence_weight"] == 0.1 and weak["mp_at_1_by_weight"]["0.03"] == 0.0  # the lightest that is right
    strong = choose_weight(siblings(30))
    assert strong["evidence_weight"] == 0.03 and strong["mp_at_1_by_weight"]["1"] == 0.0
    assert strong["queries"] == 30 and strong["how"] == "the most queries answered right"


def test_a_tie_keeps_the_default_and_few_queries_measure_nothing():
    easy = [QueryFits("a", {"a": 0.9, "b": 0.2}, {"a": 50}) for _ in range(MIN_QUERIES)]
    assert choose_weight(easy)["evidence_weight"] == 0.03  # every weight is right: the default stays
    few = choose_weight(hub(MIN_QUERIES - 1))
    assert few["evidence_weight"] == 0.03 and "fewer than 20 queries" in few["how"]


def test_the_bundle_records_the_weight_and_the_manifest_checks_it(painted_bundle):
    with load_bundle(painted_bundle) as bundle:
        record = bundle.manifest.verification
        assert record["evidence_weight"] == 0.03 and record["queries"] == 3  # 3 queries: the default
        fields = bundle.manifest.to_dict()
    from muselens.runtime.bundle import Manifest

    for bad in (0, -1, float("inf"), "heavy"):
        with pytest.raises((ValueError, TypeError), match="evidence_weight"):
            Manifest.from_dict({**fields, "verification": {"evidence_weight": bad}})
    without_features = {**fields, "files": {k: v for k, v in fields["files"].items() if k != "local_features.npz"}}
    without_features.pop("local_features")
    with pytest.raises(ValueError, match="verification settings need local features"):
        Manifest.from_dict(without_features)

"""Open-set metrics: threshold calibration with ties, the FAR/CAR curve, operating points, AUROC."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muselens.core.metrics.open_set import (
    calibrate_threshold,
    evaluate_open_set,
    open_set_curve,
    operating_point,
)

QUERIES = np.array([0.9, 0.8, 0.4])
CORRECT = np.array([True, False, True])
DISTRACTORS = np.array([0.1, 0.2, 0.3, 0.5, 0.6])


# ---------------------------------------------------------------- calibration


@pytest.mark.parametrize(
    ("target", "threshold"), [(0.0, 1.0), (0.05, 1.0), (0.1, 0.9), (0.25, 0.8), (0.3, 0.7), (0.95, 0.1)]
)
def test_calibrate_threshold_hand_examples(target, threshold):
    d = np.arange(1, 11) / 10  # 0.1 .. 1.0
    t = calibrate_threshold(d, target)
    assert t == pytest.approx(threshold)
    assert np.mean(d > t) <= target


def test_calibrate_threshold_rejects_whole_tie_group():
    # 2 accepts allowed, but the three 0.5s are tied: accepting any means accepting all three
    d = np.array([0.5, 0.5, 0.5, 0.2])
    t = calibrate_threshold(d, 0.5)
    assert t == 0.5 and np.mean(d > t) == 0.0


def test_calibrate_threshold_is_robust_to_float_products():
    d = np.arange(100) / 100.0
    assert 0.29 * 100 < 29  # the float product rounds down
    assert np.sum(d > calibrate_threshold(d, 0.29)) == 29


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.7, 1.0]), min_size=1, max_size=30),
    st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 0.9]),
)
def test_calibrate_threshold_is_the_smallest_admissible_value(scores, target):
    d = np.array(scores)
    allowed = math.floor(target * len(scores) + 1e-9)
    t = calibrate_threshold(d, target)
    # brute force: the smallest candidate threshold accepting at most `allowed` distractors
    admissible = [c for c in sorted(set(scores)) if sum(s > c for s in scores) <= allowed]
    assert t == admissible[0]
    assert sum(s > np.nextafter(t, -np.inf) for s in scores) > allowed  # anything lower accepts too many


@pytest.mark.parametrize(
    ("d", "target", "error", "match"),
    [
        (np.array([0.1]), 1.0, ValueError, r"in \[0, 1\)"),
        (np.array([0.1]), -0.01, ValueError, r"in \[0, 1\)"),
        (np.array([0.1]), "0.1", TypeError, "must be a number"),
        (np.array([]), 0.1, ValueError, "must not be empty"),
        (np.array([np.nan]), 0.1, ValueError, "non-finite"),
        (np.array([[0.1]]), 0.1, ValueError, "1-D"),
    ],
)
def test_calibrate_threshold_rejects(d, target, error, match):
    with pytest.raises(error, match=match):
        calibrate_threshold(d, target)


# ---------------------------------------------------------------- curve and operating points


def test_curve_matches_brute_force():
    rng = np.random.default_rng(6)
    q, d = rng.integers(0, 10, 40) / 10, rng.integers(0, 10, 60) / 10  # many ties
    ok = rng.random(40) < 0.7
    thresholds, far, car = open_set_curve(q, ok, d)
    assert thresholds[0] == -np.inf and np.all(np.diff(thresholds) > 0)
    for t, f, c in zip(thresholds, far, car):
        assert f == np.mean(d > t)
        assert c == np.mean((q > t) & ok)
    assert far[0] == 1.0 and car[0] == ok.mean() and far[-1] == 0.0 and car[-1] == 0.0


def test_operating_point_hand_example():
    p = operating_point(QUERIES, CORRECT, DISTRACTORS, 0.2)
    assert p.threshold == 0.5  # 1 of 5 distractors allowed: only 0.6 is above 0.5
    assert p.far == pytest.approx(0.2)
    assert p.correct_accept_rate == pytest.approx(1 / 3)  # 0.9 accepted & correct; 0.8 accepted but wrong
    assert p.accuracy == pytest.approx((1 + 4) / 8)


def test_evaluate_open_set_hand_example_and_json():
    r = evaluate_open_set(QUERIES, CORRECT, DISTRACTORS, target_fars=(0.0, 0.2))
    assert r.auroc == pytest.approx(13 / 15)  # query > distractor in 5 + 5 + 3 of 15 pairs
    assert r.closed_set_accuracy == pytest.approx(2 / 3)
    assert (r.n_queries, r.n_distractors) == (3, 5)
    assert [p.threshold for p in r.operating_points] == [0.6, 0.5]
    d = json.loads(json.dumps(r.to_dict()))
    assert d["operating_points"][1]["accuracy"] == pytest.approx(0.625)


def test_auroc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(7)
    q, d = rng.integers(0, 5, 30) / 4, rng.integers(0, 5, 25) / 4
    pairs = [1.0 if a > b else 0.5 if a == b else 0.0 for a in q for b in d]
    r = evaluate_open_set(q, np.ones(30, bool), d)
    assert r.auroc == pytest.approx(sum(pairs) / len(pairs))


def test_open_set_rejects_bad_correct_flags():
    with pytest.raises(TypeError, match="query_correct must be a 1-D boolean"):
        evaluate_open_set(QUERIES, np.array([1, 0, 1]), DISTRACTORS)
    with pytest.raises(ValueError, match="query_correct has 2 entries, expected 3"):
        open_set_curve(QUERIES, np.array([True, False]), DISTRACTORS)
    with pytest.raises(ValueError, match="query_scores must not be empty"):
        operating_point(np.array([]), np.array([], bool), DISTRACTORS, 0.1)

"""Retrieval metrics against hand-computed examples and brute-force oracles, ties included."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muselens.core.metrics.retrieval import (
    average_precision,
    evaluate_retrieval,
    precision_at_k,
    queries_in_gallery,
    ranked_relevance,
    recall_at_k,
    relevance,
)

# ---------------------------------------------------------------- brute-force oracles (pure Python)


def _ap(rel: list[bool]) -> float:
    hits, total = 0, 0.0
    for k, r in enumerate(rel, start=1):
        if r:
            hits += 1
            total += hits / k
    return total / sum(rel)


def _metrics(rel: list[bool], ks: tuple[int, ...]) -> tuple[float, ...]:
    return (_ap(rel), float(rel[0]), *(sum(rel[:k]) / k for k in ks), *(float(any(rel[:k])) for k in ks))


def _stable_oracle(scores: list[float], rel: list[bool], ks: tuple[int, ...]) -> tuple[float, ...]:
    order = sorted(range(len(scores)), key=lambda g: (-scores[g], g))
    return _metrics([rel[g] for g in order], ks)


def _pessimistic_oracle(scores: list[float], rel: list[bool], ks: tuple[int, ...]) -> tuple[float, ...]:
    """Each metric's minimum over every ordering consistent with the scores."""
    worst = None
    for order in itertools.permutations(range(len(scores))):
        if all(scores[a] >= scores[b] for a, b in itertools.pairwise(order)):
            m = _metrics([rel[g] for g in order], ks)
            worst = m if worst is None else tuple(map(min, worst, m))
    return worst


def _report_tuple(report, q: int, ks: tuple[int, ...]) -> tuple[float, ...]:
    return (
        report.average_precision[q],
        report.precision_at_1[q],
        *(report.precision_at_k[k][q] for k in ks),
        *(report.recall_at_k[k][q] for k in ks),
    )


# ---------------------------------------------------------------- hand-computed examples


def test_hand_example():
    gallery = np.array(["a", "b", "a", "c"])
    # query "a" ranks c, a, b, a -> relevance F T F T; query "c" ranks c first.
    scores = np.array([[0.9, 0.8, 0.3, 0.95], [0.1, 0.2, 0.3, 0.4]])
    r = evaluate_retrieval(scores, np.array(["a", "c"]), gallery, ks=(1, 2))
    np.testing.assert_allclose(r.average_precision, [(1 / 2 + 2 / 4) / 2, 1.0])
    np.testing.assert_allclose(r.precision_at_1, [0.0, 1.0])
    np.testing.assert_allclose(r.precision_at_k[2], [0.5, 0.5])
    np.testing.assert_allclose(r.recall_at_k[1], [0.0, 1.0])
    np.testing.assert_allclose(r.recall_at_k[2], [1.0, 1.0])
    assert r.mp_at_1 == pytest.approx(0.5)
    assert r.map == pytest.approx(0.75)
    assert r.n_queries == 2 and r.n_gallery == 4


@pytest.mark.parametrize("position", [0, 1, 4])
def test_one_relevant_item_gives_ap_one_over_rank(position):
    scores = -np.arange(5, dtype=float)[None, :]  # gallery already in ranked order
    gallery = np.array([1, 1, 1, 1, 1])
    gallery[position] = 7
    r = evaluate_retrieval(scores, np.array([7]), gallery, ks=(1, 2))
    assert r.average_precision[0] == pytest.approx(1 / (position + 1))
    assert r.recall_at_k[2][0] == float(position < 2)


def test_all_relevant_gives_perfect_scores():
    r = evaluate_retrieval(np.array([[0.3, 0.1, 0.2]]), np.array([4]), np.array([4, 4, 4]), ks=(1, 2, 3))
    assert r.map == 1.0 and r.mp_at_1 == 1.0
    assert r.precision_at_k[3][0] == 1.0


def test_k_beyond_gallery_means_whole_gallery():
    ranked = np.array([[False, False, True]])
    assert recall_at_k(ranked, 10)[0] == 1.0
    assert precision_at_k(ranked, 10)[0] == pytest.approx(0.1)  # still divided by k (eq. 4.3)


# ---------------------------------------------------------------- ties


def test_all_equal_scores_pessimistic_vs_stable():
    scores = np.array([[0.5, 0.5, 0.5]])
    labels = np.array([0])
    pess = evaluate_retrieval(scores, labels, np.array([0, 1, 2]), ks=(1, 2))
    assert pess.precision_at_1[0] == 0.0 and pess.recall_at_k[2][0] == 0.0
    assert pess.average_precision[0] == pytest.approx(1 / 3)
    stable = evaluate_retrieval(scores, labels, np.array([0, 1, 2]), ks=(1,), ties="stable")
    assert stable.precision_at_1[0] == 1.0 and stable.average_precision[0] == 1.0
    stable_last = evaluate_retrieval(scores, labels, np.array([1, 2, 0]), ks=(1,), ties="stable")
    assert stable_last.average_precision[0] == pytest.approx(1 / 3)


def test_ties_only_reorder_within_equal_scores():
    # scores 0.9 (irrelevant) > 0.5 tie {relevant, irrelevant} > 0.1 (relevant)
    scores = np.array([[0.5, 0.9, 0.1, 0.5]])
    rel = np.array([[True, False, True, False]])
    np.testing.assert_array_equal(ranked_relevance(scores, rel), [[False, False, True, True]])
    np.testing.assert_array_equal(ranked_relevance(scores, rel, "stable"), [[False, True, False, True]])


tie_scores = st.sampled_from([0.0, 0.25, 0.5, 1.0])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.lists(tie_scores, min_size=5, max_size=5), st.integers(0, 2)), min_size=1, max_size=3),
    st.lists(st.integers(0, 2), min_size=5, max_size=5),
)
def test_metrics_match_oracles_with_ties(queries, gallery_labels):
    gallery = np.array(gallery_labels)
    kept = [(s, y) for s, y in queries if y in gallery_labels]
    if not kept:
        return
    scores = np.array([s for s, _ in kept])
    labels = np.array([y for _, y in kept])
    ks = (1, 2, 4, 7)
    for ties, oracle in (("pessimistic", _pessimistic_oracle), ("stable", _stable_oracle)):
        report = evaluate_retrieval(scores, labels, gallery, ks=ks, ties=ties)
        for q, (s, y) in enumerate(kept):
            expected = oracle(s, [g == y for g in gallery_labels], ks)
            np.testing.assert_allclose(_report_tuple(report, q, ks), expected, rtol=1e-12, err_msg=ties)


def test_ap_matches_sklearn_without_ties():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = rng.random((1, 30))
        gallery = rng.integers(0, 4, 30)
        label = gallery[0]
        ap = evaluate_retrieval(scores, np.array([label]), gallery).average_precision[0]
        assert ap == pytest.approx(average_precision_score(gallery == label, scores[0]))


# ---------------------------------------------------------------- validation and reporting


def test_query_absent_from_gallery_is_refused_and_can_be_filtered():
    scores = np.ones((3, 2))
    labels, gallery = np.array([0, 5, 1]), np.array([0, 1])
    with pytest.raises(ValueError, match=r"1 queries .* absent .*\[1\].*queries_in_gallery"):
        evaluate_retrieval(scores, labels, gallery)
    keep = queries_in_gallery(labels, gallery)
    np.testing.assert_array_equal(keep, [True, False, True])
    assert evaluate_retrieval(scores[keep], labels[keep], gallery, ks=(1,)).n_queries == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"query_labels": np.array([0, 1])}, ValueError, "query_labels has 2 entries, expected 1"),
        ({"gallery_labels": np.array([0])}, ValueError, "gallery_labels has 1 entries, expected 2"),
        ({"query_labels": np.array([0.0])}, TypeError, "integers or strings"),
        ({"ties": "optimistic"}, ValueError, "ties must be one of"),
        ({"ks": (1, 0)}, ValueError, "each k in ks must be >= 1"),
        ({"scores": np.array([[np.nan, 1.0]])}, ValueError, "non-finite"),
        ({"scores": np.array([[1, 2]])}, TypeError, "floating"),
    ],
)
def test_evaluate_retrieval_rejects(kwargs, error, match):
    args = {"scores": np.array([[0.1, 0.2]]), "query_labels": np.array([0]), "gallery_labels": np.array([0, 1])}
    with pytest.raises(error, match=match):
        evaluate_retrieval(**(args | kwargs))


def test_lower_level_functions_reject_bad_input():
    with pytest.raises(ValueError, match="no relevant gallery item"):
        average_precision(np.array([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="2-D boolean"):
        precision_at_k(np.array([[1, 0]]), 1)
    with pytest.raises(ValueError, match="boolean array of shape"):
        ranked_relevance(np.ones((1, 2)), np.array([[True]]))
    with pytest.raises(ValueError, match="1-D"):
        relevance(np.array([[0]]), np.array([0]))


def test_to_dict_is_json_ready():
    r = evaluate_retrieval(np.array([[0.9, 0.1]]), np.array([1]), np.array([0, 1]), ks=(1, 5))
    d = json.loads(json.dumps(r.to_dict(per_query=True)))
    assert d["mp_at_1"] == 0.0 and d["map"] == 0.5 and d["ties"] == "pessimistic"
    assert d["recall_at_k"] == {"1": 0.0, "5": 1.0}
    assert d["per_query"]["average_precision"] == [0.5]
    assert "per_query" not in r.to_dict()

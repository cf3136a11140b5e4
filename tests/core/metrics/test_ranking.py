"""Ranking: cosine similarity by one matrix product, stable tie-breaking by gallery index."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muselens.core.metrics.ranking import l2_normalize, rank, similarity, top_k


def test_l2_normalize_hand_example():
    np.testing.assert_allclose(l2_normalize(np.array([[3.0, 4.0], [0.0, -2.0]])), [[0.6, 0.8], [0.0, -1.0]])


def test_l2_normalize_keeps_float32():
    assert l2_normalize(np.ones((2, 3), np.float32)).dtype == np.float32


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.array([[1.0, 0.0], [0.0, 0.0]]), ValueError, "zero vector"),
        (np.array([[1, 2]]), TypeError, "floating"),
        (np.array([[np.nan, 1.0]]), ValueError, "non-finite"),
        (np.zeros((0, 3)), ValueError, "empty"),
    ],
)
def test_l2_normalize_rejects(x, error, match):
    with pytest.raises(error, match=match):
        l2_normalize(x)


def test_similarity_hand_example():
    q = np.array([[2.0, 0.0]])
    g = np.array([[1.0, 0.0], [0.0, 5.0], [-1.0, 1.0]])
    np.testing.assert_allclose(similarity(q, g), [[1.0, 0.0, -np.sqrt(0.5)]])


def test_similarity_matches_pairwise_cosine_loop():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(4, 7)), rng.normal(size=(9, 7)) * 3.0
    expected = [[float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for b in g] for a in q]
    np.testing.assert_allclose(similarity(q, g), expected, rtol=1e-12)


def test_similarity_keeps_float32():
    x = np.ones((2, 3), np.float32)
    assert similarity(x, x).dtype == np.float32


@pytest.mark.parametrize(
    ("q", "g", "error", "match"),
    [
        (np.ones((2, 3)), np.ones((4, 5)), ValueError, "dimension"),
        (np.ones(3), np.ones((4, 3)), ValueError, "queries must be 2-D"),
        (np.ones((2, 3)), np.ones((4, 3), dtype=np.int64), TypeError, "gallery must have a real floating dtype"),
        (np.ones((2, 3)), np.full((4, 3), np.inf), ValueError, "gallery contains non-finite"),
        (np.ones((0, 3)), np.ones((4, 3)), ValueError, "queries must not be empty"),
        (np.ones((2, 3)), np.zeros((4, 3)), ValueError, "zero vector"),
    ],
)
def test_similarity_rejects(q, g, error, match):
    with pytest.raises(error, match=match):
        similarity(q, g)


def test_rank_breaks_ties_by_gallery_index():
    scores = np.array([[0.5, 0.9, 0.5, 0.9, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(rank(scores), [[1, 3, 0, 2, 4], [0, 1, 2, 3, 4]])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([-1.0, -0.0, 0.0, 0.25, 0.5, 1.0]), min_size=6, max_size=6), min_size=1, max_size=4))
def test_rank_matches_sorted_oracle(rows):
    scores = np.array(rows)
    expected = [sorted(range(len(r)), key=lambda g, r=r: (-r[g], g)) for r in rows]
    np.testing.assert_array_equal(rank(scores), expected)


def test_top_k_is_a_prefix_of_rank_with_scores():
    scores = np.array([[0.2, 0.7, 0.7, 0.1]])
    idx, val = top_k(scores, 2)
    np.testing.assert_array_equal(idx, [[1, 2]])
    np.testing.assert_array_equal(val, [[0.7, 0.7]])
    idx, _ = top_k(scores, 10)  # capped at the gallery size
    np.testing.assert_array_equal(idx, rank(scores))


@pytest.mark.parametrize(("k", "error"), [(0, ValueError), (True, TypeError), (1.0, TypeError)])
def test_top_k_rejects_bad_k(k, error):
    with pytest.raises(error, match="k must"):
        top_k(np.ones((1, 3)), k)

"""Pairwise decomposition against brute force: the cells sum to the score, in both directions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muselens.runtime.explain.decompose import Explanation, decompose, explain_query, explain_reference
from muselens.runtime.explain.maps import PooledMap, RegionMaps
from tests.runtime.explain import oracles


def _tol(terms: np.ndarray) -> float:
    """Float32 rounding of each returned cell, accumulated over the cells."""
    return 1e-6 * float(np.abs(terms).sum()) + 1e-12


def _check_sums(expl: Explanation, expected_score: float, expected_terms: np.ndarray) -> None:
    assert expl.score == pytest.approx(expected_score, rel=1e-9, abs=1e-12)
    assert abs(float(expl.region_map.sum(dtype=np.float64)) - expected_score) <= _tol(expected_terms)
    assert abs(float(expl.region_contributions.sum(dtype=np.float64)) - expected_score) <= _tol(expected_terms)
    for field in (expl.region_map, expl.full_map, expl.region_contributions):
        assert field.dtype == np.float32
    assert expl.region_map.shape == expl.full_map.shape == expl.shape


def test_region_descriptor_query_direction_matches_brute_force():
    rng = np.random.default_rng(0)
    dmap, locs, desc = oracles.random_region_outputs(rng, 32, 6, 5, 4)
    reference = oracles.l2norm(rng.normal(size=32))
    expl = explain_query(RegionMaps(dmap, locs, desc), reference)
    terms = oracles.region_cell_terms(dmap, locs, reference)
    _check_sums(expl, float(oracles.region_descriptor(dmap, locs) @ reference), terms)
    assert expl.side == "query" and expl.k == 4 and expl.shape == (6, 5)
    np.testing.assert_allclose(expl.full_map, terms, rtol=1e-6, atol=1e-7)
    rows, cols = np.unravel_index(locs, (6, 5))
    np.testing.assert_allclose(expl.region_contributions, terms[rows, cols], rtol=1e-6, atol=1e-7)
    expected_region = np.zeros((6, 5))
    expected_region[rows, cols] = terms[rows, cols]
    np.testing.assert_allclose(expl.region_map, expected_region, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(expl.locations, locs)
    # The graph's float32 descriptor gives the same score up to float32 rounding.
    assert expl.score == pytest.approx(float(desc.astype(np.float64) @ reference), abs=1e-6)


def test_full_map_sums_to_the_score_only_at_the_locations():
    rng = np.random.default_rng(1)
    dmap, locs, _ = oracles.random_region_outputs(rng, 8, 4, 4, 3)
    expl = explain_query(RegionMaps(dmap, locs), oracles.l2norm(rng.normal(size=8)))
    assert float(expl.full_map.reshape(-1)[locs].sum(dtype=np.float64)) == pytest.approx(expl.score, abs=1e-6)
    assert abs(float(expl.full_map.sum(dtype=np.float64)) - expl.score) > 1e-3  # the other cells add more


def test_both_directions_give_the_same_score_and_each_sums_to_it():
    rng = np.random.default_rng(2)
    qmap, qlocs, qdesc = oracles.random_region_outputs(rng, 24, 5, 6, 4)
    rmap, rlocs, rdesc = oracles.random_region_outputs(rng, 24, 7, 4, 4)
    query, reference = RegionMaps(qmap, qlocs, qdesc), RegionMaps(rmap, rlocs, rdesc)
    from_query = explain_query(query, rdesc)
    from_reference = explain_reference(reference, qdesc)
    assert from_query.side == "query" and from_reference.side == "reference"
    assert from_reference.shape == (7, 4)
    brute = float(oracles.region_descriptor(qmap, qlocs) @ oracles.region_descriptor(rmap, rlocs))
    assert from_query.score == pytest.approx(brute, abs=1e-6)  # float32 descriptors as "other"
    assert from_reference.score == pytest.approx(brute, abs=1e-6)
    _check_sums(from_query, float(oracles.region_descriptor(qmap, qlocs) @ rdesc),
                oracles.region_cell_terms(qmap, qlocs, rdesc.astype(np.float64)))
    _check_sums(from_reference, float(oracles.region_descriptor(rmap, rlocs) @ qdesc),
                oracles.region_cell_terms(rmap, rlocs, qdesc.astype(np.float64)))


@pytest.mark.parametrize("side", ["query", "reference"])
def test_average_pooling_matches_eq_3(side):
    rng = np.random.default_rng(3)
    fmap = rng.normal(size=(16, 5, 4)).astype(np.float32)
    other_map = rng.normal(size=(16, 3, 3)).astype(np.float32)
    other = oracles.average_descriptor(other_map)
    expl = decompose(PooledMap(fmap, "average"), other, side=side)
    terms = oracles.average_cell_terms(fmap, other)
    _check_sums(expl, float(oracles.average_descriptor(fmap) @ other), terms)
    np.testing.assert_allclose(expl.full_map, terms, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(expl.full_map, expl.region_map)
    assert expl.side == side and expl.k == 20


@pytest.mark.parametrize("side", ["query", "reference"])
def test_max_pooling_matches_eq_5_6(side):
    rng = np.random.default_rng(4)
    fmap = rng.normal(size=(16, 5, 4)).astype(np.float32)
    other = oracles.max_descriptor(rng.normal(size=(16, 4, 4)))
    expl = decompose(PooledMap(fmap, "max"), other, side=side)
    terms = oracles.max_cell_terms(fmap, other)
    _check_sums(expl, float(oracles.max_descriptor(fmap) @ other), terms)
    np.testing.assert_allclose(expl.full_map, terms, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(expl.full_map, expl.region_map)


def test_max_pooling_splits_tied_maxima_equally():
    fmap = np.zeros((2, 2, 2), dtype=np.float32)
    fmap[0] = [[3.0, 3.0], [1.0, 3.0]]  # channel 0: maximum 3 held by three cells
    fmap[1] = [[0.0, 4.0], [4.0, -1.0]]  # channel 1: maximum 4 held by two cells
    other = np.array([1.0, 2.0])
    expl = decompose(PooledMap(fmap, "max"), other)
    norm = 5.0  # ||(3, 4)||
    expected = np.array([[1.0 * 1.0, 1.0 * 1.0 + 2.0 * 2.0], [2.0 * 2.0, 1.0 * 1.0]]) / norm
    np.testing.assert_allclose(expl.full_map, expected, rtol=1e-6)
    assert expl.score == pytest.approx((3.0 * 1.0 + 4.0 * 2.0) / norm)
    assert float(expl.full_map.sum()) == pytest.approx(expl.score, rel=1e-6)
    np.testing.assert_array_equal(expl.locations, [0, 1, 2, 3])


def test_max_pooling_cells_without_a_maximum_get_nothing():
    fmap = np.zeros((2, 3, 3))
    fmap[0, 1, 1] = 2.0
    fmap[1, 2, 0] = 1.0
    expl = decompose(PooledMap(fmap, "max"), np.array([0.5, -1.0]))
    assert np.count_nonzero(expl.full_map) == 2
    np.testing.assert_array_equal(expl.locations, [4, 6])
    np.testing.assert_allclose(expl.region_contributions, [1.0 / np.sqrt(5), -1.0 / np.sqrt(5)], rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    d=st.integers(1, 12),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    k_fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    kind=st.sampled_from(["regions", "average", "max"]),
    quantise=st.booleans(),
)
def test_property_cells_sum_to_the_score(d, h, w, k_fraction, seed, scale, kind, quantise):
    rng = np.random.default_rng(seed)
    fmap = rng.normal(size=(d, h, w)) * scale
    if quantise:  # small integers make max-pooling ties and exact zeros likely
        fmap = np.round(fmap / scale * 2.0)
    fmap = fmap.astype(np.float32)
    other = rng.normal(size=d)
    if kind == "regions":
        k = 1 + int(k_fraction * (h * w - 1))
        locs = rng.permutation(h * w)[:k]
        total = np.zeros(d)
        for loc in locs:
            total += fmap[:, loc // w, loc % w]
        if not np.linalg.norm(total) > 0:
            with pytest.raises(ValueError, match="zero vector"):
                explain_query(RegionMaps(fmap, locs), other)
            return
        image = RegionMaps(fmap, locs)
        brute = float(oracles.region_descriptor(fmap, locs) @ other)
        terms = oracles.region_cell_terms(fmap, locs, other)[np.unravel_index(locs, (h, w))]
    else:
        pooled = fmap.astype(np.float64).mean(axis=(1, 2)) if kind == "average" else fmap.max(axis=(1, 2))
        if not np.linalg.norm(pooled) > 0:
            with pytest.raises(ValueError, match="zero vector"):
                explain_query(PooledMap(fmap, kind), other)
            return
        image = PooledMap(fmap, kind)
        descriptor = oracles.average_descriptor(fmap) if kind == "average" else oracles.max_descriptor(fmap)
        brute = float(descriptor @ other)
        cells = oracles.average_cell_terms(fmap, other) if kind == "average" else oracles.max_cell_terms(fmap, other)
        terms = cells.reshape(-1)
    for expl in (explain_query(image, other), explain_reference(image, other)):
        assert abs(expl.score - brute) <= 1e-9 * (np.abs(terms).sum() + 1.0)
        assert abs(float(expl.region_map.sum(dtype=np.float64)) - brute) <= _tol(terms) + 1e-9
        assert abs(float(expl.region_contributions.sum(dtype=np.float64)) - brute) <= _tol(terms) + 1e-9


@pytest.mark.parametrize(
    ("other", "match"),
    [
        (np.ones(5), "reference has 5 dimensions, the map has 4"),
        (np.ones((1, 4)), "reference must be 1-D"),
        (np.ones(4, dtype=np.int32), "reference must have a real floating dtype"),
        (np.array([1.0, np.nan, 0.0, 0.0]), "reference contains non-finite"),
    ],
)
def test_explain_query_rejects_bad_reference(other, match):
    image = RegionMaps(np.random.default_rng(5).normal(size=(4, 2, 2)), np.array([1, 2]))
    with pytest.raises(ValueError, match=match):
        explain_query(image, other)


def test_explain_reference_names_the_query_descriptor():
    image = PooledMap(np.ones((4, 2, 2)), "average")
    with pytest.raises(ValueError, match="query_descriptor has 3 dimensions"):
        explain_reference(image, np.ones(3))


def test_decompose_rejects_unknown_side_and_non_maps():
    image = PooledMap(np.ones((4, 2, 2)), "average")
    with pytest.raises(ValueError, match="side must be one of"):
        decompose(image, np.ones(4), side="gallery")
    with pytest.raises(TypeError, match="RegionMaps or PooledMap"):
        decompose(np.ones((4, 2, 2)), np.ones(4))
    with pytest.raises(TypeError, match="RegionMaps or PooledMap"):
        explain_query({"descriptor_map": np.ones((4, 2, 2))}, np.ones(4))

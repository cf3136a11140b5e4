"""Region-of-interest cells and re-ranking against brute force (paper 001, section 4.6)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from muselens.runtime.explain.decompose import explain_query
from muselens.runtime.explain.maps import PooledMap, RegionMaps
from muselens.runtime.explain.roi import rerank_by_roi, roi_mask
from tests.runtime.explain import oracles


def _brute_mask(roi, h, w):
    x0, y0, x1, y1 = roi
    mask = np.zeros((h, w), dtype=bool)
    for i in range(h):
        for j in range(w):
            cx, cy = (j + 0.5) / w, (i + 0.5) / h
            mask[i, j] = x0 <= cx < x1 and y0 <= cy < y1
    return mask


def test_whole_image_roi_selects_every_cell():
    assert roi_mask((0.0, 0.0, 1.0, 1.0), (3, 5)).all()


@pytest.mark.parametrize("roi", [(0.0, 0.0, 0.5, 0.5), (0.25, 0.1, 0.9, 0.6), (0.7, 0.7, 1.0, 1.0),
                                 (0.0, 0.5, 1.0, 1.0), (0.3, 0.3, 0.31, 0.31)])
@pytest.mark.parametrize("shape", [(1, 1), (4, 4), (3, 7), (10, 2)])
def test_roi_mask_matches_cell_centre_loop(roi, shape):
    expected = _brute_mask(roi, *shape)
    if not expected.any():
        with pytest.raises(ValueError, match="contains no feature-cell centre"):
            roi_mask(roi, shape)
    else:
        np.testing.assert_array_equal(roi_mask(roi, shape), expected)


def test_roi_boundary_through_a_centre_is_half_open():
    # 4 columns: centres at 0.125, 0.375, 0.625, 0.875; x0 on a centre includes it, x1 excludes it.
    mask = roi_mask((0.375, 0.0, 0.625, 1.0), (1, 4))
    np.testing.assert_array_equal(mask, [[False, True, False, False]])
    left, right = roi_mask((0.0, 0.0, 0.5, 1.0), (3, 4)), roi_mask((0.5, 0.0, 1.0, 1.0), (3, 4))
    assert not (left & right).any() and (left | right).all()


def test_small_roi_between_centres_is_refused_with_advice():
    with pytest.raises(ValueError, match=r"contains no feature-cell centre of the 2x2 map.*enlarge"):
        roi_mask((0.3, 0.3, 0.7, 0.7), (2, 2))  # centres at 0.25 and 0.75


@pytest.mark.parametrize(
    ("roi", "match"),
    [
        ((0.5, 0.0, 0.5, 1.0), "non-empty"),
        ((0.6, 0.0, 0.5, 1.0), "non-empty"),
        ((0.0, 0.9, 1.0, 0.2), "non-empty"),
        ((-0.1, 0.0, 0.5, 1.0), r"roi x0 must lie in \[0, 1\]"),
        ((0.0, 0.0, 1.5, 1.0), r"roi x1 must lie in \[0, 1\]"),
        ((0.0, float("nan"), 0.5, 1.0), r"roi y0 must lie in \[0, 1\]"),
        ((0.0, 0.0, True, 1.0), "roi x1 must be a number"),
        ((0.0, 0.0, "1", 1.0), "roi x1 must be a number"),
        ((0.0, 0.0, 1.0), r"roi must be \(x0, y0, x1, y1\)"),
        ("0011", r"roi must be \(x0, y0, x1, y1\)"),
    ],
)
def test_roi_mask_rejects(roi, match):
    with pytest.raises(ValueError, match=match):
        roi_mask(roi, (4, 4))


@pytest.mark.parametrize("shape", [(0, 3), (3,), (2.0, 3), (True, 2)])
def test_roi_mask_rejects_bad_shape(shape):
    with pytest.raises(ValueError, match="shape must"):
        roi_mask((0.0, 0.0, 1.0, 1.0), shape)


def _query(kind: str, rng: np.random.Generator):
    if kind == "regions":
        dmap, locs, desc = oracles.random_region_outputs(rng, 12, 6, 5, 4)
        return RegionMaps(dmap, locs, desc)
    return PooledMap(rng.normal(size=(12, 6, 5)).astype(np.float32), kind)


@pytest.mark.parametrize("kind", ["regions", "average", "max"])
@pytest.mark.parametrize("which", ["full", "region"])
@pytest.mark.parametrize("roi", [(0.0, 0.0, 1.0, 1.0), (0.1, 0.2, 0.6, 0.9), (0.5, 0.0, 1.0, 0.4)])
def test_rerank_matches_brute_force(kind, which, roi):
    rng = np.random.default_rng(zlib.crc32(repr((kind, which, roi)).encode()))
    query = _query(kind, rng)
    candidates = np.stack([oracles.l2norm(v) for v in rng.normal(size=(9, 12))])
    mask = _brute_mask(roi, 6, 5)
    brute = []
    for c in candidates:
        expl = explain_query(query, c)
        heat = expl.full_map if which == "full" else expl.region_map
        brute.append(float(heat[mask].sum(dtype=np.float64)))
    brute = np.array(brute)
    ranking = rerank_by_roi(query, candidates, roi, which=which)
    np.testing.assert_array_equal(ranking.mask, mask)
    assert ranking.order.dtype == np.int64 and sorted(ranking.order) == list(range(9))
    np.testing.assert_allclose(ranking.scores, brute[ranking.order], rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(ranking.scores) <= 0)
    # Brute-force order, when no two scores are within float32 rounding of each other.
    gaps = np.abs(brute[:, None] - brute[None, :])[~np.eye(9, dtype=bool)]
    if gaps.min() > 1e-5:
        np.testing.assert_array_equal(ranking.order, np.argsort(-brute, kind="stable"))


def test_whole_image_roi_on_pooled_maps_ranks_by_the_full_score():
    rng = np.random.default_rng(11)
    query = _query("average", rng)
    candidates = rng.normal(size=(6, 12))
    ranking = rerank_by_roi(query, candidates, (0.0, 0.0, 1.0, 1.0))
    scores = np.array([explain_query(query, c).score for c in candidates])
    np.testing.assert_allclose(ranking.scores, scores[ranking.order], rtol=1e-9)


def test_roi_holding_exactly_the_regions_gives_the_whole_score():
    rng = np.random.default_rng(12)
    dmap = rng.normal(size=(8, 4, 4))
    query = RegionMaps(dmap, np.array([0, 1, 4, 5]))  # the top-left 2x2 cells
    candidates = rng.normal(size=(5, 8))
    ranking = rerank_by_roi(query, candidates, (0.0, 0.0, 0.5, 0.5))
    scores = np.array([explain_query(query, c).score for c in candidates])
    np.testing.assert_allclose(ranking.scores, scores[ranking.order], rtol=1e-9, atol=1e-12)


def test_region_map_roi_missing_every_region_scores_zero_but_full_map_ranks():
    rng = np.random.default_rng(13)
    query = RegionMaps(rng.normal(size=(8, 4, 4)), np.array([0, 1]))  # regions in the top row
    candidates = rng.normal(size=(4, 8))
    roi = (0.0, 0.5, 1.0, 1.0)  # bottom half
    region = rerank_by_roi(query, candidates, roi, which="region")
    np.testing.assert_array_equal(region.scores, np.zeros(4))
    np.testing.assert_array_equal(region.order, [0, 1, 2, 3])  # all tied: candidate order
    assert np.ptp(rerank_by_roi(query, candidates, roi).scores) > 0


def test_ties_keep_candidate_order():
    rng = np.random.default_rng(14)
    query = _query("regions", rng)
    distinct = rng.normal(size=(3, 12))
    pick = rng.integers(0, 3, size=60)  # many exact ties: identical rows give identical scores
    ranking = rerank_by_roi(query, distinct[pick], (0.0, 0.0, 1.0, 1.0))
    value = {i: float(explain_query(query, distinct[i]).full_map.sum(dtype=np.float64)) for i in range(3)}
    groups = sorted(range(3), key=lambda i: -value[i])
    expected = [n for g in groups for n in range(60) if pick[n] == g]
    np.testing.assert_array_equal(ranking.order, expected)


@pytest.mark.parametrize(
    ("candidates", "kwargs", "match"),
    [
        (np.ones((3, 11)), {}, "candidates has 11 dimensions per row, the map has 12"),
        (np.ones(12), {}, "candidates must be 2-D"),
        (np.ones((0, 12)), {}, "candidates must not be empty"),
        (np.ones((3, 12)), {"which": "all"}, "which must be one of"),
        (np.ones((3, 12)), {"roi": (0.2, 0.2, 0.1, 0.9)}, "non-empty"),
    ],
)
def test_rerank_rejects(candidates, kwargs, match):
    query = _query("max", np.random.default_rng(15))
    args = {"roi": (0.0, 0.0, 1.0, 1.0)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        rerank_by_roi(query, candidates, **args)

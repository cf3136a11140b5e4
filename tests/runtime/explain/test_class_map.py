"""Class similarity maps: one decomposition against the sum equals the sum of pairwise maps."""

from __future__ import annotations

import numpy as np
import pytest

from muselens.runtime.explain.class_map import class_similarity
from muselens.runtime.explain.decompose import explain_query
from muselens.runtime.explain.maps import PooledMap, RegionMaps
from tests.runtime.explain import oracles


def _images(rng: np.random.Generator):
    dmap, locs, desc = oracles.random_region_outputs(rng, 16, 5, 6, 4)
    fmap = rng.normal(size=(16, 5, 6)).astype(np.float32)
    return [RegionMaps(dmap, locs, desc), PooledMap(fmap, "average"), PooledMap(fmap, "max")]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_class_map_equals_the_explicit_sum_of_pairwise_maps(which):
    rng = np.random.default_rng(which)
    image = _images(rng)[which]
    references = np.stack([oracles.l2norm(v) for v in rng.normal(size=(5, 16))]).astype(np.float32)
    pairwise = [explain_query(image, r) for r in references]
    cls = class_similarity(image, references)
    assert cls.score == pytest.approx(sum(p.score for p in pairwise), rel=1e-9, abs=1e-12)
    for field in ("full_map", "region_map", "region_contributions"):
        explicit = np.sum([getattr(p, field).astype(np.float64) for p in pairwise], axis=0)
        np.testing.assert_allclose(getattr(cls, field), explicit, rtol=1e-5, atol=1e-6)
    assert float(cls.region_map.sum(dtype=np.float64)) == pytest.approx(cls.score, abs=1e-5)
    np.testing.assert_array_equal(cls.locations, pairwise[0].locations)
    assert cls.side == "query"


def test_class_map_is_a_scaled_map_against_the_instance_averaged_vector():
    rng = np.random.default_rng(7)
    image = _images(rng)[0]
    references = rng.normal(size=(3, 16))
    averaged = oracles.l2norm(references.mean(axis=0))
    cls = class_similarity(image, references, side="reference")
    scale = np.linalg.norm(references.sum(axis=0))
    np.testing.assert_allclose(cls.full_map, scale * explain_query(image, averaged).full_map, rtol=1e-5, atol=1e-6)
    assert cls.side == "reference"


def test_single_reference_class_map_is_the_pairwise_map():
    rng = np.random.default_rng(8)
    image = _images(rng)[1]
    r = rng.normal(size=16)
    np.testing.assert_array_equal(class_similarity(image, r[None, :]).full_map, explain_query(image, r).full_map)


@pytest.mark.parametrize(
    ("references", "match"),
    [
        (np.ones(16), "references must be 2-D"),
        (np.ones((0, 16)), "references must not be empty"),
        (np.ones((2, 15)), "references has 15 dimensions per row, the map has 16"),
        (np.ones((2, 16), dtype=np.int64), "references must have a real floating dtype"),
        (np.full((2, 16), np.inf), "references contains non-finite"),
    ],
)
def test_class_similarity_rejects(references, match):
    image = _images(np.random.default_rng(9))[2]
    with pytest.raises(ValueError, match=match):
        class_similarity(image, references)


def test_class_similarity_rejects_bad_side():
    with pytest.raises(ValueError, match="side must be one of"):
        class_similarity(_images(np.random.default_rng(10))[0], np.ones((1, 16)), side="both")

"""Inputs to an explanation: validation, and cell vectors that sum to the descriptor."""

from __future__ import annotations

import numpy as np
import pytest

from muselens.runtime.explain.maps import PooledMap, RegionMaps
from tests.runtime.explain import oracles


def _sum_at(vectors: np.ndarray, locations: np.ndarray) -> np.ndarray:
    d = vectors.shape[0]
    return vectors.reshape(d, -1)[:, locations].sum(axis=1)


def test_region_cell_vectors_sum_to_the_descriptor_at_the_locations():
    rng = np.random.default_rng(0)
    dmap, locs, desc = oracles.random_region_outputs(rng, 16, 5, 7, 4)
    cells = RegionMaps(dmap, locs, desc).cell_vectors()
    np.testing.assert_allclose(_sum_at(cells.vectors, cells.locations), oracles.region_descriptor(dmap, locs),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(cells.descriptor, desc, atol=1e-6)
    assert cells.shape == (5, 7) and cells.dim == 16
    np.testing.assert_array_equal(cells.locations, locs)


@pytest.mark.parametrize("pooling", ["average", "max"])
def test_pooled_cell_vectors_sum_to_the_pooled_descriptor(pooling):
    fmap = np.random.default_rng(1).normal(size=(9, 4, 6)).astype(np.float32)
    cells = PooledMap(fmap, pooling).cell_vectors()
    oracle = oracles.average_descriptor(fmap) if pooling == "average" else oracles.max_descriptor(fmap)
    np.testing.assert_allclose(_sum_at(cells.vectors, cells.locations), oracle, atol=1e-12)
    np.testing.assert_allclose(cells.descriptor, oracle, atol=1e-12)


def test_average_pooling_locations_are_every_cell_and_sum_pooling_gives_the_same_descriptor():
    fmap = np.random.default_rng(2).normal(size=(5, 3, 4))
    cells = PooledMap(fmap, "average").cell_vectors()
    np.testing.assert_array_equal(cells.locations, np.arange(12))
    np.testing.assert_allclose(cells.descriptor, oracles.l2norm(fmap.sum(axis=(1, 2))), atol=1e-12)


def test_max_pooling_locations_are_the_cells_holding_a_maximum():
    fmap = np.zeros((2, 2, 3))
    fmap[0, 1, 2] = 5.0  # channel 0: max at flat cell 5
    fmap[1, 0, 1] = 3.0  # channel 1: max at flat cell 1
    np.testing.assert_array_equal(PooledMap(fmap, "max").cell_vectors().locations, [1, 5])


def test_region_maps_accepts_float64_and_int32_and_no_descriptor():
    rng = np.random.default_rng(3)
    dmap = rng.normal(size=(4, 2, 2))
    maps = RegionMaps(dmap, np.array([3, 0], dtype=np.int32))
    assert maps.locations.dtype == np.int64 and maps.k == 2 and maps.descriptor is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"descriptor_map": np.ones((4, 3))}, "descriptor_map must be 3-D"),
        ({"descriptor_map": np.ones((4, 3, 3), dtype=np.int64)}, "descriptor_map must have a real floating dtype"),
        ({"descriptor_map": np.ones((0, 3, 3))}, "descriptor_map must not be empty"),
        ({"descriptor_map": np.full((4, 3, 3), np.nan)}, "descriptor_map contains non-finite"),
        ({"locations": np.array([0.0, 1.0])}, "locations must hold integers"),
        ({"locations": np.array([True, False])}, "locations must hold integers"),
        ({"locations": np.array([[0, 1]])}, r"locations must be 1-D"),
        ({"locations": np.array([], dtype=np.int64)}, "locations must not be empty"),
        ({"locations": np.arange(10)}, "k=10 entries but the map has only 9 cells"),
        ({"locations": np.array([0, 9])}, r"locations must lie in \[0, 9\)"),
        ({"locations": np.array([-1, 2])}, r"locations must lie in \[0, 9\)"),
        ({"locations": np.array([2, 2])}, "repeats a cell"),
        ({"descriptor": np.ones(5, np.float32)}, "descriptor has 5 dimensions, the map has 4"),
        ({"descriptor": np.ones(4, np.int64)}, "descriptor must have a real floating dtype"),
        ({"descriptor": np.array([1.0, 0, 0, np.inf])}, "descriptor contains non-finite"),
        ({"descriptor_atol": -1.0}, "descriptor_atol must be finite and >= 0"),
        ({"descriptor_atol": True}, "descriptor_atol must be a number"),
    ],
)
def test_region_maps_rejects(kwargs, match):
    args = {"descriptor_map": np.random.default_rng(4).normal(size=(4, 3, 3)), "locations": np.array([4, 0])}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        RegionMaps(**args)


def test_region_maps_rejects_a_descriptor_from_another_image():
    rng = np.random.default_rng(5)
    dmap, locs, _ = oracles.random_region_outputs(rng, 8, 3, 3, 2)
    _, _, other = oracles.random_region_outputs(rng, 8, 3, 3, 2)
    with pytest.raises(ValueError, match="do not belong together"):
        RegionMaps(dmap, locs, other)


def test_region_maps_refuses_a_zero_sum_of_regions():
    dmap = np.zeros((3, 2, 2))
    dmap[:, 0, 0] = [1.0, 2.0, 3.0]
    dmap[:, 0, 1] = [-1.0, -2.0, -3.0]
    with pytest.raises(ValueError, match="zero vector"):
        RegionMaps(dmap, np.array([0, 1])).cell_vectors()


@pytest.mark.parametrize("pooling", ["average", "max"])
def test_pooled_map_refuses_a_zero_pooled_feature(pooling):
    fmap = np.zeros((3, 2, 2))
    if pooling == "average":  # each channel's cells cancel out, the maximum would not
        fmap[:, 0, 0], fmap[:, 1, 1] = 2.0, -2.0
    with pytest.raises(ValueError, match=f"the {pooling}-pooled feature is the zero vector"):
        PooledMap(fmap, pooling).cell_vectors()


@pytest.mark.parametrize(
    ("fmap", "pooling", "match"),
    [
        (np.ones((3, 2, 2)), "sum", "pooling must be one of"),
        (np.ones((3, 2)), "average", "feature_map must be 3-D"),
        (np.ones((3, 2, 2), dtype=np.float16) * np.float16(np.inf), "max", "non-finite"),
        (np.ones((3, 2, 2), dtype=bool), "max", "real floating dtype"),
    ],
)
def test_pooled_map_rejects(fmap, pooling, match):
    with pytest.raises(ValueError, match=match):
        PooledMap(fmap, pooling)


def test_from_outputs_picks_the_named_outputs_and_ignores_the_rest():
    rng = np.random.default_rng(6)
    dmap, locs, desc = oracles.random_region_outputs(rng, 8, 3, 4, 4)
    outputs = {"descriptor": desc, "activation": rng.normal(size=(3, 4)).astype(np.float32),
               "descriptor_map": dmap, "locations": locs, "class_logits": rng.normal(size=5)}
    maps = RegionMaps.from_outputs(outputs)
    assert maps.descriptor_map is dmap and maps.k == 4 and maps.descriptor is desc


def test_from_outputs_uses_the_graph_output_names():
    from muselens.core.descriptor_contract import OUTPUT_NAMES

    assert {"descriptor", "descriptor_map", "locations"} <= set(OUTPUT_NAMES)


def test_from_outputs_rejects_missing_names_and_non_mappings():
    with pytest.raises(ValueError, match=r"outputs lack \['locations', 'descriptor'\]"):
        RegionMaps.from_outputs({"descriptor_map": np.ones((2, 2, 2))})
    with pytest.raises(TypeError, match="outputs must map output names"):
        RegionMaps.from_outputs([np.ones(2)])
    with pytest.raises(ValueError, match="descriptor_map must be 3-D, got shape"):
        RegionMaps.from_outputs({"descriptor_map": np.ones((1, 2, 2, 2)), "locations": np.array([[0]]),
                                 "descriptor": np.ones((1, 2))})

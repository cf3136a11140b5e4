"""Instance-averaging, query expansion and database-side augmentation against loop oracles."""

from __future__ import annotations

import numpy as np
import pytest

from muselens.core.metrics.augmentation import (
    average_query_expansion,
    database_side_augmentation,
    instance_average,
    rank_weights,
)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _neighbours(sims: list[float], k: int, exclude: int | None = None) -> list[int]:
    candidates = [j for j in range(len(sims)) if j != exclude]
    return sorted(candidates, key=lambda j: (-sims[j], j))[:k]


# ---------------------------------------------------------------- instance-averaging (5.4.4)


def test_instance_average_hand_example():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    desc, labels = instance_average(x, np.array(["b", "a", "b"]))
    np.testing.assert_array_equal(labels, ["a", "b"])
    np.testing.assert_allclose(desc, [[0.0, 1.0], [np.sqrt(0.5), np.sqrt(0.5)]])


def test_instance_average_matches_loop_and_keeps_dtype():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 6)).astype(np.float32)
    y = rng.integers(0, 5, 20)
    desc, labels = instance_average(x, y)
    assert desc.dtype == np.float32
    for row, label in zip(desc, labels):
        members = [_unit(v.astype(np.float64)) for v in x[y == label]]
        np.testing.assert_allclose(row, _unit(np.mean(members, axis=0)), rtol=1e-5)


def test_instance_average_rejects():
    with pytest.raises(ValueError, match="zero vector"):
        instance_average(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([0, 0]))
    with pytest.raises(ValueError, match="labels has 1 entries, expected 2"):
        instance_average(np.ones((2, 2)), np.array([0]))


# ---------------------------------------------------------------- query expansion (5.4.2)


def test_query_expansion_hand_example():
    q = np.array([[1.0, 0.0]])
    g = np.array([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(average_query_expansion(q, g, k=1), [_unit(np.array([1.8, 0.6]))])


def test_query_expansion_matches_loop():
    rng = np.random.default_rng(2)
    q, g = rng.normal(size=(5, 4)), rng.normal(size=(12, 4))
    out = average_query_expansion(q, g, k=3)
    for qi, row in zip(q, out):
        gn = [_unit(v) for v in g]
        nn = _neighbours([float(_unit(qi) @ v) for v in gn], 3)
        np.testing.assert_allclose(row, _unit(_unit(qi) + sum(gn[j] for j in nn)), rtol=1e-12)


def test_query_expansion_tie_takes_lower_gallery_index_and_caps_k():
    q = np.array([[1.0, 0.0]])
    g = np.array([[0.0, 1.0], [0.0, -1.0]])  # both at similarity 0: index 0 wins
    np.testing.assert_allclose(average_query_expansion(q, g, k=1), [_unit(np.array([1.0, 1.0]))])
    np.testing.assert_allclose(average_query_expansion(q, g, k=9), average_query_expansion(q, g, k=2))


# ---------------------------------------------------------------- database-side augmentation (5.4.3)


def test_rank_weights_decrease_with_rank():
    np.testing.assert_allclose(rank_weights(1), [1.0, 0.5])
    np.testing.assert_allclose(rank_weights(2), [1.0, 2 / 3, 1 / 3])


def test_database_side_augmentation_hand_example():
    g = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    # nearest other item: 0 -> 1, 1 -> 0, 2 -> 1 (sim -0.6 beats -1); weights 1 and 1/2
    expected = [_unit(g[0] + 0.5 * g[1]), _unit(g[1] + 0.5 * g[0]), _unit(g[2] + 0.5 * g[1])]
    np.testing.assert_allclose(database_side_augmentation(g, k=1), expected)


def test_database_side_augmentation_matches_loop():
    rng = np.random.default_rng(4)
    g = [_unit(v) for v in rng.normal(size=(10, 5))]
    k = 3
    out = database_side_augmentation(np.array(g), k=k)
    for i, row in enumerate(out):
        nn = _neighbours([float(g[i] @ v) for v in g], k, exclude=i)
        total = g[i] + sum((k + 1 - r) / (k + 1) * g[j] for r, j in enumerate(nn, start=1))
        np.testing.assert_allclose(row, _unit(total), rtol=1e-12)


def test_database_side_augmentation_excludes_self_among_duplicates():
    g = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    out = database_side_augmentation(g, k=1)
    np.testing.assert_allclose(out[:2], [[1.0, 0.0], [1.0, 0.0]])  # each one's neighbour is the other copy
    np.testing.assert_allclose(out[2], _unit(np.array([0.5, 1.0])))  # tie between 0 and 1: index 0


def test_database_side_augmentation_rejects_k_too_large():
    with pytest.raises(ValueError, match="k=2 needs at least k\\+1=3 gallery items"):
        database_side_augmentation(np.eye(2), k=2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        database_side_augmentation(np.eye(2), k=0)

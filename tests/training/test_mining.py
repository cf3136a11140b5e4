"""Offline mining (paper 004, 3.2.3) against a brute-force Python oracle, ties included."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from muselens.training.mining import mine_from_similarity, mine_triplets, strategy_for_epoch


def oracle(sim: np.ndarray, labels: np.ndarray, strategy: str, fallback: str) -> list[tuple[int, int, int]]:
    """The paper's rule, one positive pair at a time; ties to the smaller index."""
    n = len(labels)
    out = []
    for a in range(n):
        negatives = [j for j in range(n) if labels[j] != labels[a]]
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            if strategy == "hardest":
                out.append((a, p, min(negatives, key=lambda j: (-sim[a, j], j))))
                continue
            easier = [j for j in negatives if sim[a, j] < sim[a, p]]
            if easier:
                out.append((a, p, min(easier, key=lambda j: (-sim[a, j], j))))
            elif fallback == "easiest":
                out.append((a, p, min(negatives, key=lambda j: (sim[a, j], j))))
    return out


def tied_set(seed: int, n: int = 40, classes: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Integer-valued descriptors: dot products are exact, and many tie (also a.n == a.p)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, size=(n, 4)).astype(np.float64)
    labels = rng.integers(0, classes, size=n)
    labels[0] = classes + 3  # a singleton: no positive pair, only a negative for others
    return x, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("strategy, fallback", [("semi-hard", "easiest"), ("semi-hard", "skip"),
                                                ("hardest", "easiest")])
def test_matches_the_oracle_with_ties(seed, strategy, fallback):
    x, labels = tied_set(seed)
    expected = oracle(x @ x.T, labels, strategy, fallback)
    got = mine_triplets(x, labels, strategy, fallback)
    assert got.dtype == np.int64 and got.shape == (len(expected), 3)
    assert [tuple(t) for t in got.tolist()] == expected


def test_the_tied_data_exercises_every_branch():
    """Ties among negatives, negatives tied with the positive, and pairs with no easier negative."""
    x, labels = tied_set(0)
    sim = x @ x.T
    semi = {tuple(t) for t in oracle(sim, labels, "semi-hard", "skip")}
    with_fallback = oracle(sim, labels, "semi-hard", "easiest")
    assert len(with_fallback) > len(semi) > 0
    tie_with_positive = any(sim[a, j] == sim[a, p] and labels[j] != labels[a]
                            for a, p, _ in with_fallback for j in range(len(labels)))
    tie_among_negatives = any(
        sum(sim[a, j] == sim[a, n] and labels[j] != labels[a] for j in range(len(labels))) > 1
        for a, _, n in semi
    )
    assert tie_with_positive and tie_among_negatives


@pytest.mark.parametrize("seed", range(3))
def test_random_similarities_with_ties_and_blocks(seed):
    """The core on a raw, asymmetric similarity matrix, searched in tiny blocks."""
    rng = np.random.default_rng(100 + seed)
    n = 30
    sim = np.round(rng.normal(size=(n, n)), 1).astype(np.float32)
    labels = rng.integers(0, 5, size=n)
    for strategy in ("semi-hard", "hardest"):
        for fallback in ("easiest", "skip"):
            expected = oracle(sim, labels, strategy, fallback)
            got = mine_from_similarity(sim, np.arange(n), labels, strategy, fallback, block_elements=7)
            assert [tuple(t) for t in got.tolist()] == expected
    rows = np.arange(10, 25)
    part = mine_from_similarity(sim[rows], rows, labels, "semi-hard")
    assert [tuple(t) for t in part.tolist()] == [t for t in oracle(sim, labels, "semi-hard", "easiest")
                                                if 10 <= t[0] < 25]


def test_chunks_and_input_types_do_not_change_the_result():
    x, labels = tied_set(7, n=50)
    reference = mine_triplets(x, labels, "semi-hard")
    for chunk in (1, 3, 17, 1000):
        np.testing.assert_array_equal(mine_triplets(x, labels, "semi-hard", chunk=chunk), reference)
    np.testing.assert_array_equal(mine_triplets(torch.from_numpy(x), torch.from_numpy(labels), "semi-hard"),
                                  reference)


def test_triplets_are_valid_and_semi_hard_where_possible():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = rng.integers(0, 40, size=200)
    pairs = sum(c * (c - 1) for c in np.bincount(labels))
    for strategy in ("semi-hard", "hardest"):
        t = mine_triplets(x, labels, strategy)
        a, p, n = t.T
        assert len(t) == pairs
        assert np.all(labels[a] == labels[p]) and np.all(a != p) and np.all(labels[a] != labels[n])
    a, p, n = mine_triplets(x, labels, "semi-hard", fallback="skip").T
    sim = x @ x.T
    assert np.all(sim[a, n] < sim[a, p])


def test_clicide_size_runs_in_seconds():
    """CLICIDE: 3,245 images (about 10.5 M dot products), 512-d descriptors."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3245, 512)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = rng.integers(0, 464, size=3245)
    pairs = sum(c * (c - 1) for c in np.bincount(labels))
    start = time.perf_counter()
    t = mine_triplets(x, labels, "semi-hard")
    elapsed = time.perf_counter() - start
    assert len(t) == pairs
    assert elapsed < 20.0, f"semi-hard mining took {elapsed:.1f} s"


def test_schedule_is_semi_hard_for_two_epochs_then_hardest():
    assert [strategy_for_epoch(e) for e in range(5)] == ["semi-hard", "semi-hard", "hardest", "hardest", "hardest"]
    assert strategy_for_epoch(0, semi_hard_epochs=0) == "hardest"
    with pytest.raises(ValueError, match="epoch"):
        strategy_for_epoch(-1)
    with pytest.raises(ValueError, match="semi_hard_epochs"):
        strategy_for_epoch(1, semi_hard_epochs=1.5)


def test_a_set_without_positive_pairs_gives_no_triplets():
    t = mine_triplets(np.eye(3), np.array([0, 1, 2]))
    assert t.shape == (0, 3) and t.dtype == np.int64


def test_input_validation():
    x, labels = tied_set(0, n=10)
    with pytest.raises(ValueError, match="strategy"):
        mine_triplets(x, labels, "random")
    with pytest.raises(ValueError, match="fallback"):
        mine_triplets(x, labels, fallback="hardest")
    with pytest.raises(ValueError, match="chunk"):
        mine_triplets(x, labels, chunk=0)
    with pytest.raises(ValueError, match="NaN"):
        mine_triplets(np.full((3, 2), np.nan), np.array([0, 0, 1]))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        mine_triplets(x[0], labels)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        mine_triplets(x.astype(np.int64), labels)
    with pytest.raises(TypeError, match="numpy array or torch.Tensor"):
        mine_triplets(x.tolist(), labels)
    with pytest.raises(TypeError, match="integers"):
        mine_triplets(x, labels.astype(float))
    with pytest.raises(ValueError, match=r"labels must be \(10,\)"):
        mine_triplets(x, labels[:5])
    with pytest.raises(ValueError, match="two labels"):
        mine_triplets(x, np.zeros(10, dtype=np.int64))
    with pytest.raises(ValueError, match="similarities contain NaN"):
        mine_from_similarity(np.full((2, 2), np.nan), np.arange(2), np.array([0, 1]), "hardest")
    with pytest.raises(ValueError, match="similarity rows"):
        mine_from_similarity(np.zeros((3, 2)), np.arange(2), np.array([0, 1]), "hardest")
    with pytest.raises(ValueError, match="row ids"):
        mine_from_similarity(np.zeros((1, 2)), np.array([5]), np.array([0, 1]), "hardest")
    with pytest.raises(TypeError, match="floating point"):
        mine_from_similarity(np.zeros((2, 2), dtype=np.int64), np.arange(2), np.array([0, 1]), "hardest")
    with pytest.raises(ValueError, match="block_elements"):
        mine_from_similarity(np.zeros((2, 2)), np.arange(2), np.array([0, 1]), "semi-hard", block_elements=0)

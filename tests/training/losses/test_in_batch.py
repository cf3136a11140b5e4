"""Distances and in-batch triplet selection against brute force, ties included."""

from __future__ import annotations

import itertools

import pytest
import torch

from muselens.training.losses.in_batch import all_triplets, hardest_triplets, label_masks, pairwise_distances

from .conftest import DTYPES, TOL, pk_batch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("squared", [False, True])
def test_pairwise_distances_match_the_definition(dtype, squared):
    x, _ = pk_batch(3, 3, 6, dtype)
    expected = ((x.double()[:, None, :] - x.double()[None, :, :]) ** 2).sum(-1)
    if not squared:
        expected = expected.sqrt()
    d = pairwise_distances(x, squared=squared)
    assert d.dtype == dtype and bool((d.diagonal() == 0).all())
    torch.testing.assert_close(d.double(), expected, **TOL[dtype])


def test_duplicate_rows_give_finite_gradients():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    pairwise_distances(x).sum().backward()
    assert bool(torch.isfinite(x.grad).all())


def oracle_hardest(d: list[list[float]], labels: list[int]) -> list[tuple[int, int, int]]:
    out = []
    for a, la in enumerate(labels):
        pos = [j for j, lj in enumerate(labels) if lj == la and j != a]
        neg = [j for j, lj in enumerate(labels) if lj != la]
        if not pos or not neg:
            continue
        p = min(pos, key=lambda j: (-d[a][j], j))  # farthest, then smallest index
        n = min(neg, key=lambda j: (d[a][j], j))  # nearest, then smallest index
        out.append((a, p, n))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_hardest_triplets_match_the_oracle_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-1, 2, (12, 3), generator=g).double()  # few distinct points: many tied distances
    labels = torch.randint(0, 4, (12,), generator=g)
    labels[0] = 9  # a singleton: no positive, not an anchor
    d = pairwise_distances(x, squared=True)
    expected = oracle_hardest(d.tolist(), labels.tolist())
    assert hardest_triplets(d, labels).tolist() == [list(t) for t in expected]


def test_all_triplets_match_itertools():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3])
    lab = labels.tolist()
    expected = [
        [a, p, n]
        for a, p, n in itertools.product(range(7), repeat=3)
        if a != p and lab[a] == lab[p] and lab[n] != lab[a]
    ]
    assert all_triplets(labels).tolist() == expected


def test_label_masks():
    pos, neg = label_masks(torch.tensor([0, 0, 1]))
    assert pos.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    assert neg.tolist() == [[False, False, True], [False, False, True], [True, True, False]]


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 1, 2, 3]])
def test_a_batch_without_valid_triplets_is_refused(labels):
    labels = torch.tensor(labels)
    with pytest.raises(ValueError, match="no valid triplet"):
        all_triplets(labels)
    with pytest.raises(ValueError, match="no valid triplet"):
        hardest_triplets(torch.zeros(4, 4), labels)


def test_input_validation():
    with pytest.raises(ValueError, match="square"):
        hardest_triplets(torch.zeros(3, 4), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match=r"labels must be \(3,\)"):
        hardest_triplets(torch.zeros(3, 3), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="1-D"):
        all_triplets(torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer"):
        all_triplets(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        pairwise_distances(torch.zeros(3))

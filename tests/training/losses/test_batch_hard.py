"""Paper 003's in-batch losses against a brute-force oracle (and pytorch-metric-learning)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from muselens.training.losses.batch_hard import (
    DEFAULT_MARGINS,
    KINDS,
    BatchHardTripletLoss,
    batch_hard_loss,
    triplet_terms,
)
from muselens.training.losses.in_batch import all_triplets, hardest_triplets, pairwise_distances
from muselens.training.losses.triplet import triplet_dot_loss

from .conftest import DTYPES, TOL, pk_batch, separated_batch


def _dist(u: list[float], v: list[float]) -> float:
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v)))


def oracle(x: torch.Tensor, labels: torch.Tensor, kind: str, margin: float, selection: str, reduction: str) -> float:
    """Paper 003's formulas, written out, on features normalised by hand."""
    rows = [[v / math.sqrt(sum(w * w for w in r)) for v in r] for r in x.double().tolist()]
    lab = labels.tolist()
    b = len(lab)
    if selection == "all":
        triplets = [(a, p, n) for a, p, n in itertools.product(range(b), repeat=3)
                    if a != p and lab[a] == lab[p] and lab[n] != lab[a]]
    else:
        triplets = []
        for a in range(b):
            pos = [j for j in range(b) if j != a and lab[j] == lab[a]]
            neg = [j for j in range(b) if lab[j] != lab[a]]
            if pos and neg:
                triplets.append((a, max(pos, key=lambda j: _dist(rows[a], rows[j])),
                                 min(neg, key=lambda j: _dist(rows[a], rows[j]))))
    terms = []
    for a, p, n in triplets:
        d_ap, d_an, d_pn = _dist(rows[a], rows[p]), _dist(rows[a], rows[n]), _dist(rows[p], rows[n])
        if kind == "hinge":
            terms.append(max(0.0, d_ap - d_an + margin))
        elif kind == "squared":
            terms.append(max(0.0, d_ap**2 - d_an**2 + margin))
        elif kind == "soft":
            terms.append(math.log(1 + math.exp(d_ap - d_an + margin)))
        else:
            terms.append(d_ap + math.log(math.exp(margin - d_an) + math.exp(margin - d_pn)))
    if reduction == "sum":
        return sum(terms)
    if reduction == "mean":
        return sum(terms) / len(terms)
    nonzero = [t for t in terms if t != 0]
    return sum(nonzero) / max(len(nonzero), 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("selection", ["hardest", "all"])
@pytest.mark.parametrize("reduction", ["mean-nonzero", "mean", "sum"])
def test_matches_the_oracle(dtype, kind, selection, reduction):
    x, labels = pk_batch(3, 3, 4, dtype, seed=7)
    margin = 0.3
    loss = batch_hard_loss(x, labels, kind, margin, selection, reduction)
    expected = oracle(x, labels, kind, margin, selection, reduction)
    assert loss.dtype == dtype
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=dtype), **TOL[dtype])


def test_the_hinge_batch_has_both_zero_and_nonzero_terms():
    """So mean-nonzero and mean above really differ: the oracle test can tell them apart."""
    x, labels = pk_batch(3, 3, 4, torch.float64, seed=7)
    d = pairwise_distances(torch.nn.functional.normalize(x, dim=1))
    terms = triplet_terms(d, all_triplets(labels), "hinge", 0.3)
    assert 0 < int((terms == 0).sum()) < terms.numel()


@pytest.mark.parametrize("kind", KINDS)
def test_defaults(kind):
    x, labels = pk_batch(4, 2, 5, torch.float64, seed=1)
    expected_reduction = "mean-nonzero" if kind in ("hinge", "squared") else "mean"
    loss = BatchHardTripletLoss(kind)
    assert loss.margin == DEFAULT_MARGINS[kind] and loss.reduction == expected_reduction
    assert loss.selection == "hardest" and loss.normalise and loss.requires_triplets is False
    expected = oracle(x, labels, kind, DEFAULT_MARGINS[kind], "hardest", expected_reduction)
    assert math.isclose(float(loss(x, labels)), expected, rel_tol=1e-10, abs_tol=1e-12)


def test_squared_with_margin_two_tenths_is_twice_the_dot_product_loss():
    x, labels = pk_batch(3, 3, 4, torch.float64, seed=2)
    unit = torch.nn.functional.normalize(x, dim=1)
    a, p, n = all_triplets(labels).unbind(1)
    squared = batch_hard_loss(x, labels, "squared", 0.2, selection="all", reduction="sum")
    torch.testing.assert_close(squared, 2 * triplet_dot_loss(unit[a], unit[p], unit[n], 0.1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["hinge", "squared"])
@pytest.mark.parametrize("selection", ["hardest", "all"])
def test_hinges_are_zero_when_separated_by_more_than_the_margin(dtype, kind, selection):
    x, labels = separated_batch(3, 3, dtype)
    x.requires_grad_()
    loss = batch_hard_loss(x, labels, kind, selection=selection)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert float(x.grad.abs().max()) == 0.0


@pytest.mark.parametrize("kind", ["soft", "soft-pn"])
def test_soft_losses_fall_as_the_classes_separate(kind):
    spreads = (1.0, 0.1, 0.01)
    losses = [float(batch_hard_loss(*separated_batch(3, 3, torch.float64, s), kind)) for s in spreads]
    assert losses[0] > losses[1] > losses[2]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("selection", ["hardest", "all"])
def test_gradcheck_on_tiny_float64_inputs(kind, selection):
    x, labels = pk_batch(3, 2, 3, torch.float64, seed=11)
    assert torch.autograd.gradcheck(lambda z: batch_hard_loss(z, labels, kind, 0.3, selection), (x.requires_grad_(),))


def test_without_normalisation_distances_are_raw():
    x, labels = pk_batch(3, 2, 3, torch.float64, seed=4)
    x = 5 * x
    d = pairwise_distances(x)
    a, p, n = all_triplets(labels).unbind(1)
    expected = torch.clamp(d[a, p] - d[a, n] + 0.1, min=0).sum()
    torch.testing.assert_close(batch_hard_loss(x, labels, "hinge", 0.1, "all", "sum", normalise=False), expected)


def test_agrees_with_pytorch_metric_learning_batch_hard_miner():
    """PML's BatchHardMiner + TripletMarginLoss (AvgNonZeroReducer) is our hinge, hardest, mean-nonzero."""
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses", reason="optional cross-check")
    pml_miners = pytest.importorskip("pytorch_metric_learning.miners", reason="optional cross-check")
    x, labels = pk_batch(4, 4, 8, torch.float64, seed=3)
    mined = pml_miners.BatchHardMiner()(x, labels)
    unit = torch.nn.functional.normalize(x, dim=1)
    ours = {tuple(t) for t in hardest_triplets(pairwise_distances(unit), labels).tolist()}
    assert {tuple(t) for t in torch.stack(mined, dim=1).tolist()} == ours
    for margin in (0.05, 0.3):
        expected = pml_losses.TripletMarginLoss(margin=margin)(x, labels, mined)
        torch.testing.assert_close(batch_hard_loss(x, labels, "hinge", margin), expected)
    smooth = pml_losses.TripletMarginLoss(margin=0.0, smooth_loss=True)(x, labels, mined)
    torch.testing.assert_close(batch_hard_loss(x, labels, "soft"), smooth)


def test_input_validation():
    x, labels = pk_batch(2, 2, 3, torch.float32)
    with pytest.raises(ValueError, match="do not pass triplets"):
        BatchHardTripletLoss()(x, labels, torch.tensor([[0, 2, 1]]))
    with pytest.raises(ValueError, match="kind"):
        BatchHardTripletLoss("ratio")
    with pytest.raises(ValueError, match="kind"):
        batch_hard_loss(x, labels, "ratio")
    with pytest.raises(ValueError, match="selection"):
        BatchHardTripletLoss(selection="semi-hard")
    with pytest.raises(ValueError, match="selection"):
        batch_hard_loss(x, labels, selection="semi-hard")
    with pytest.raises(ValueError, match="reduction"):
        BatchHardTripletLoss(reduction="max")
    with pytest.raises(ValueError, match="margin"):
        BatchHardTripletLoss(margin=-1.0)
    with pytest.raises(TypeError, match="integer"):
        batch_hard_loss(x, labels.float())
    with pytest.raises(ValueError, match=r"labels must be \(4,\)"):
        batch_hard_loss(x, labels[:3])
    with pytest.raises(ValueError, match="no valid triplet"):
        batch_hard_loss(x, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        batch_hard_loss(x / 0, labels)

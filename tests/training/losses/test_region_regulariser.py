"""Paper 004's stage-3 loss (eq. 3.6): triplet sum + alpha x the mean region cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from muselens.training.losses.batch_hard import BatchHardTripletLoss
from muselens.training.losses.region_regulariser import RegionRegularisedLoss, region_cross_entropy
from muselens.training.losses.triplet import TripletDotLoss

from .conftest import DTYPES, TOL

LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
TRIPLETS = [(0, 1, 2), (1, 0, 4), (2, 3, 5), (4, 5, 0), (5, 4, 3)]
K, CLASSES = 4, 3


def batch(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1).to(dtype)
    logits = (2 * torch.randn(6, K, CLASSES, generator=g, dtype=torch.float64)).to(dtype)
    return x, logits


def oracle_eq_3_6(x: torch.Tensor, logits: torch.Tensor, alpha: float) -> float:
    rows, lg, y = x.double().tolist(), logits.double().tolist(), LABELS.tolist()
    dot = lambda u, v: sum(a * b for a, b in zip(u, v))  # noqa: E731
    triplet = sum(max(0.0, dot(rows[a], rows[n]) - dot(rows[a], rows[p]) + 0.1) for a, p, n in TRIPLETS)
    ce = 0.0
    for i in range(len(y)):
        for region in lg[i]:
            log_z = math.log(sum(math.exp(v) for v in region))
            ce += log_z - region[y[i]]
    return triplet + alpha * ce / (len(y) * K)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [1.0, 0.25, 0.0])
def test_matches_eq_3_6(dtype, alpha):
    x, logits = batch(dtype)
    loss = RegionRegularisedLoss(TripletDotLoss(), alpha=alpha)(x, LABELS, logits, torch.tensor(TRIPLETS))
    assert loss.dtype == dtype
    torch.testing.assert_close(loss, torch.tensor(oracle_eq_3_6(x, logits, alpha), dtype=dtype), **TOL[dtype])


def test_the_default_alpha_is_the_papers_one():
    assert RegionRegularisedLoss(TripletDotLoss()).alpha == 1.0


def test_cross_entropy_is_zero_only_for_confident_correct_regions():
    logits = torch.full((6, K, CLASSES), -50.0, dtype=torch.float64)
    logits[torch.arange(6), :, LABELS] = 50.0
    assert float(region_cross_entropy(logits, LABELS)) < 1e-40
    wrong = logits.roll(1, dims=2)
    assert float(region_cross_entropy(wrong, LABELS)) > 99.0


def test_gradcheck_of_the_region_cross_entropy():
    _, logits = batch(torch.float64)
    assert torch.autograd.gradcheck(lambda z: region_cross_entropy(z, LABELS), (logits.requires_grad_(),))


def test_wraps_an_in_batch_loss_and_reports_how_its_triplets_come():
    x, logits = batch(torch.float32)
    metric = BatchHardTripletLoss("hinge")
    wrapped = RegionRegularisedLoss(metric, alpha=0.5)
    assert wrapped.requires_triplets is False
    assert RegionRegularisedLoss(TripletDotLoss()).requires_triplets is True
    expected = metric(x, LABELS) + 0.5 * region_cross_entropy(logits, LABELS)
    torch.testing.assert_close(wrapped(x, LABELS, logits), expected)


def test_input_validation():
    x, logits = batch(torch.float32)
    loss = RegionRegularisedLoss(TripletDotLoss())
    triplets = torch.tensor(TRIPLETS)
    with pytest.raises(ValueError, match="for 5 images"):
        loss(x, LABELS, logits[:5], triplets)
    with pytest.raises(ValueError, match=r"\(N, k, classes\)"):
        region_cross_entropy(logits[:, 0], LABELS)
    with pytest.raises(TypeError, match="floating-point"):
        region_cross_entropy(logits.long(), LABELS)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        region_cross_entropy(logits, LABELS + 1)
    with pytest.raises(ValueError, match=r"labels must be \(6,\)"):
        region_cross_entropy(logits, LABELS[:4])
    with pytest.raises(ValueError, match="alpha"):
        RegionRegularisedLoss(TripletDotLoss(), alpha=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        RegionRegularisedLoss(TripletDotLoss(), alpha=float("nan"))
    with pytest.raises(TypeError, match="nn.Module"):
        RegionRegularisedLoss(lambda *a: 0.0)

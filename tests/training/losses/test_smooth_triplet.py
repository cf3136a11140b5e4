"""Paper 002's smooth triplet loss against a brute-force oracle (and pytorch-metric-learning)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from muselens.training.losses.smooth_triplet import DEFAULT_SCALE, SmoothTripletLoss, smooth_triplet_loss

from .conftest import DTYPES, TOL, pk_batch, separated_batch


def oracle(x: torch.Tensor, labels: torch.Tensor, scale: float) -> float:
    rows = [[scale * v / math.sqrt(sum(w * w for w in r)) for v in r] for r in x.double().tolist()]
    lab = labels.tolist()
    d = lambda u, v: sum((a - b) ** 2 for a, b in zip(u, v))  # noqa: E731  squared Euclidean
    terms = [
        math.log(1 + math.exp(d(rows[a], rows[p]) - d(rows[a], rows[n])))
        for a, p, n in itertools.product(range(len(lab)), repeat=3)
        if a != p and lab[a] == lab[p] and lab[n] != lab[a]
    ]
    return sum(terms) / len(terms)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [DEFAULT_SCALE, 1.0, 2.5])
def test_matches_the_oracle(dtype, scale):
    x, labels = pk_batch(3, 3, 4, dtype, seed=5)
    loss = SmoothTripletLoss(scale)(x, labels)
    assert loss.dtype == dtype
    torch.testing.assert_close(loss, torch.tensor(oracle(x, labels, scale), dtype=dtype), **TOL[dtype])


def test_the_default_scale_is_four():
    x, labels = pk_batch(2, 3, 4, torch.float64)
    assert SmoothTripletLoss().scale == 4.0
    assert math.isclose(float(smooth_triplet_loss(x, labels)), oracle(x, labels, 4.0), rel_tol=1e-10)


def test_is_the_softplus_of_the_dot_product_gap_times_two_scale_squared():
    x, labels = pk_batch(2, 2, 3, torch.float64, seed=8)
    u = F.normalize(x, dim=1)
    triplets = [(a, p, n) for a, p, n in itertools.product(range(4), repeat=3)
                if a != p and labels[a] == labels[p] and labels[n] != labels[a]]
    expected = sum(F.softplus(2 * 16 * (u[a] @ u[n] - u[a] @ u[p])) for a, p, n in triplets) / len(triplets)
    torch.testing.assert_close(smooth_triplet_loss(x, labels), expected)


def test_the_sign_pulls_positives_together():
    """Paper 002's text prints d(a,n) - d(a,p); the loss must fall as classes separate, not rise."""
    losses = [float(smooth_triplet_loss(*separated_batch(3, 3, torch.float64, s))) for s in (1.0, 0.2, 0.02)]
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] < 1e-12  # separated: practically zero (softplus never reaches 0)


def test_gradcheck_on_tiny_float64_inputs():
    x, labels = pk_batch(3, 2, 3, torch.float64, seed=9)
    assert torch.autograd.gradcheck(lambda z: smooth_triplet_loss(z, labels, 1.5), (x.requires_grad_(),))


def test_agrees_with_pytorch_metric_learning():
    """PML's TripletMarginLoss(smooth_loss, margin 0, squared L2) over all triplets of 4 * unit features."""
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses", reason="optional cross-check")
    pml_distances = pytest.importorskip("pytorch_metric_learning.distances", reason="optional cross-check")
    x, labels = pk_batch(4, 3, 6, torch.float64, seed=6)
    reference = pml_losses.TripletMarginLoss(
        margin=0.0, smooth_loss=True, distance=pml_distances.LpDistance(normalize_embeddings=False, power=2)
    )(4 * F.normalize(x, dim=1), labels)
    torch.testing.assert_close(smooth_triplet_loss(x, labels), reference)


def test_input_validation():
    x, labels = pk_batch(2, 2, 3, torch.float32)
    with pytest.raises(ValueError, match="do not pass triplets"):
        SmoothTripletLoss()(x, labels, torch.tensor([[0, 2, 1]]))
    for bad in (0.0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="scale"):
            SmoothTripletLoss(bad)
    with pytest.raises(ValueError, match="no valid triplet"):
        smooth_triplet_loss(x, torch.arange(4))
    with pytest.raises(TypeError, match="integer"):
        smooth_triplet_loss(x, labels.float())
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        smooth_triplet_loss(x[None], labels)

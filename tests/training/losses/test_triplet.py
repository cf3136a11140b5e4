"""Paper 004's dot-product triplet loss (eq. 3.4) against a brute-force oracle."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from muselens.training.losses.triplet import TripletDotLoss, triplet_dot_loss, triplet_dot_terms

from .conftest import DTYPES, TOL, separated_batch

LABELS = torch.tensor([0, 0, 1, 1, 2, 0, 2])
TRIPLETS = [(0, 1, 2), (0, 5, 3), (1, 0, 4), (2, 3, 0), (3, 2, 6), (4, 6, 1), (6, 4, 5), (5, 0, 2)]


def unit_batch(dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(7, 5, generator=g, dtype=torch.float64), dim=1).to(dtype)


def oracle(x: torch.Tensor, triplets: list[tuple[int, int, int]], margin: float) -> list[float]:
    rows = x.double().tolist()
    dot = lambda u, v: sum(a * b for a, b in zip(u, v))  # noqa: E731
    return [max(0.0, dot(rows[a], rows[n]) - dot(rows[a], rows[p]) + margin) for a, p, n in triplets]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [0.1, 0.5, 0.0])
def test_matches_the_oracle_for_sum_and_mean(dtype, margin):
    x = unit_batch(dtype)
    expected = oracle(x, TRIPLETS, margin)
    assert sum(v > 0 for v in expected) >= 3  # the batch exercises both sides of the hinge
    assert sum(v == 0 for v in expected) >= 1
    loss = TripletDotLoss(margin=margin)(x, LABELS, torch.tensor(TRIPLETS))
    mean = TripletDotLoss(margin=margin, reduction="mean")(x, LABELS, torch.tensor(TRIPLETS))
    assert loss.dtype == dtype
    torch.testing.assert_close(loss, torch.tensor(sum(expected), dtype=dtype), **TOL[dtype])
    torch.testing.assert_close(mean, torch.tensor(sum(expected) / len(expected), dtype=dtype), **TOL[dtype])


def test_the_default_is_the_paper_sum_with_margin_one_tenth():
    x = unit_batch(torch.float64)
    a, p, n = torch.tensor(TRIPLETS).unbind(1)
    loss = triplet_dot_loss(x[a], x[p], x[n])
    assert math.isclose(float(loss), sum(oracle(x, TRIPLETS, 0.1)), rel_tol=1e-12)


def test_is_half_the_squared_distance_loss_of_eq_3_2_with_twice_the_margin():
    x = unit_batch(torch.float64, seed=3)
    a, p, n = torch.tensor(TRIPLETS).unbind(1)
    d_ap = ((x[a] - x[p]) ** 2).sum(1)
    d_an = ((x[a] - x[n]) ** 2).sum(1)
    eq_3_2 = (0.5 * torch.clamp(d_ap - d_an + 2 * 0.1, min=0)).sum()
    torch.testing.assert_close(triplet_dot_loss(x[a], x[p], x[n], 0.1), eq_3_2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_when_every_triplet_is_separated_by_more_than_the_margin(dtype):
    x, labels = separated_batch(3, 3, dtype)
    triplets = torch.tensor([(0, 1, 3), (4, 5, 8), (8, 6, 0), (2, 0, 7)])
    a, p, n = triplets.unbind(1)
    assert bool(((x[a] * x[p]).sum(1) - (x[a] * x[n]).sum(1) > 0.1).all())
    loss = TripletDotLoss()(x.requires_grad_(), labels, triplets)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert float(x.grad.abs().max()) == 0.0


def test_gradcheck_on_tiny_float64_inputs():
    g = torch.Generator().manual_seed(5)
    a, p, n = (torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, p, n: triplet_dot_terms(a, p, n, 0.1), (a, p, n))
    assert torch.autograd.gradcheck(lambda a, p, n: triplet_dot_loss(a, p, n, 0.3, normalise=True), (a, p, n))
    unit = [F.normalize(t.detach(), dim=1).requires_grad_() for t in (a, p, n)]
    assert torch.autograd.gradcheck(lambda a, p, n: triplet_dot_loss(a, p, n, 0.3), unit)


def test_normalise_true_equals_normalising_first():
    g = torch.Generator().manual_seed(2)
    raw = 3 * torch.randn(7, 5, generator=g, dtype=torch.float64)
    a, p, n = torch.tensor(TRIPLETS).unbind(1)
    unit = F.normalize(raw, dim=1)
    torch.testing.assert_close(triplet_dot_loss(raw[a], raw[p], raw[n], normalise=True),
                               triplet_dot_loss(unit[a], unit[p], unit[n]))


def test_refuses_descriptors_that_are_not_normalised():
    x = unit_batch(torch.float32)
    a, p, n = torch.tensor(TRIPLETS).unbind(1)
    with pytest.raises(ValueError, match="L2-normalised"):
        triplet_dot_loss(x[a] * 1.01, x[p], x[n])
    with pytest.raises(ValueError, match="L2-normalised"):
        TripletDotLoss()(2 * x, LABELS, torch.tensor(TRIPLETS))


@pytest.mark.parametrize(
    "triplets, message",
    [
        ([(0, 2, 3)], "share its anchor's label"),
        ([(0, 0, 2)], "another image"),
        ([(0, 1, 5)], "another label"),
        ([(0, 1, 7)], r"\[0, 7\)"),
        ([(-1, 1, 2)], r"\[0, 7\)"),
    ],
)
def test_refuses_triplets_that_contradict_the_labels(triplets, message):
    with pytest.raises(ValueError, match=message):
        TripletDotLoss()(unit_batch(torch.float32), LABELS, torch.tensor(triplets))


def test_input_validation():
    x = unit_batch(torch.float32)
    loss = TripletDotLoss()
    with pytest.raises(ValueError, match="needs the mined"):
        loss(x, LABELS)
    with pytest.raises(TypeError, match="int64"):
        loss(x, LABELS, torch.tensor(TRIPLETS, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"\(T, 3\)"):
        loss(x, LABELS, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="integer"):
        loss(x, LABELS.float(), torch.tensor(TRIPLETS))
    with pytest.raises(ValueError, match=r"labels must be \(7,\)"):
        loss(x, LABELS[:6], torch.tensor(TRIPLETS))
    with pytest.raises(TypeError, match="floating point"):
        loss(x.long(), LABELS, torch.tensor(TRIPLETS))
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        loss(x[0], LABELS, torch.tensor(TRIPLETS))
    with pytest.raises(ValueError, match="NaN"):
        loss(x.masked_fill(torch.eye(7, 5, dtype=torch.bool), float("nan")), LABELS, torch.tensor(TRIPLETS))
    with pytest.raises(ValueError, match="one shape"):
        triplet_dot_loss(x[:2], x[:2], x[:3])
    with pytest.raises(ValueError, match="reduction"):
        TripletDotLoss(reduction="mean-nonzero")
    with pytest.raises(ValueError, match="margin"):
        TripletDotLoss(margin=-0.1)
    with pytest.raises(TypeError, match="margin"):
        TripletDotLoss(margin="0.1")

"""The LOSSES registry: every name builds a module that trains on a small P x K batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from muselens.training.losses import DEFAULT_LOSS, LOSSES, RegionRegularisedLoss, build_loss
from muselens.training.losses.batch_hard import BatchHardTripletLoss

from .conftest import pk_batch

EXPECTED = {"triplet-dot", "batch-hard-hinge", "batch-hard-squared", "batch-hard-soft", "batch-hard-soft-pn",
            "smooth-triplet"}


def test_names():
    assert set(LOSSES) == EXPECTED and DEFAULT_LOSS in LOSSES


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_loss_gives_a_finite_scalar_and_gradients(name):
    x, labels = pk_batch(3, 3, 8, torch.float32, seed=0)
    x = F.normalize(x, dim=1).requires_grad_()
    loss = build_loss(name)
    triplets = torch.tensor([(0, 3, 1), (1, 4, 2), (2, 5, 0), (6, 0, 7)]) if loss.requires_triplets else None
    assert loss.requires_triplets == (name == "triplet-dot")
    value = loss(x, labels, triplets)
    assert value.ndim == 0 and bool(torch.isfinite(value))
    value.backward()
    assert bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0


def test_kwargs_reach_the_module_and_wrap_into_eq_3_6():
    loss = build_loss("batch-hard-squared", margin=0.5, selection="all")
    assert isinstance(loss, BatchHardTripletLoss) and loss.kind == "squared"
    assert loss.margin == 0.5 and loss.selection == "all"
    assert RegionRegularisedLoss(build_loss("triplet-dot")).requires_triplets


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown loss 'contrastive'"):
        build_loss("contrastive")

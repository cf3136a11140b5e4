"""Metric-learning losses: paper 004's dot-product triplet loss and the alternatives of 002, 003.

Every registered loss is an ``nn.Module`` called as ``loss(embeddings, labels, triplets=None)``.
Its ``requires_triplets`` attribute says how triplets are formed: ``True`` for ``"triplet-dot"``
(offline-mined over the whole training set by :mod:`muselens.training.mining`, passed as
``(T, 3)`` indices into the batch), ``False`` for the in-batch losses (P x K batches, triplets
formed in feature space, ``triplets`` must be ``None``). Paper 004's full stage-3 loss (eq. 3.6)
wraps any of them: ``RegionRegularisedLoss(build_loss("triplet-dot"), alpha=1.0)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from muselens.training.losses.batch_hard import BatchHardTripletLoss, batch_hard_loss
from muselens.training.losses.region_regulariser import RegionRegularisedLoss, region_cross_entropy
from muselens.training.losses.smooth_triplet import SmoothTripletLoss, smooth_triplet_loss
from muselens.training.losses.triplet import TripletDotLoss, triplet_dot_loss

LOSSES: dict[str, Callable[..., nn.Module]] = {
    "triplet-dot": TripletDotLoss,  # paper 004 eq. 3.4, m = 0.1, sum over mined triplets
    "batch-hard-hinge": partial(BatchHardTripletLoss, kind="hinge"),  # paper 003
    "batch-hard-squared": partial(BatchHardTripletLoss, kind="squared"),  # paper 003, squared distances
    "batch-hard-soft": partial(BatchHardTripletLoss, kind="soft"),  # softplus (Hermans et al.)
    "batch-hard-soft-pn": partial(BatchHardTripletLoss, kind="soft-pn"),  # paper 003's own soft loss
    "smooth-triplet": SmoothTripletLoss,  # paper 002, all triplets, features x 4
}
DEFAULT_LOSS = "triplet-dot"


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate a registered loss, e.g. ``build_loss("batch-hard-hinge", margin=0.2)``."""
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name](**kwargs)


__all__ = [
    "DEFAULT_LOSS",
    "LOSSES",
    "BatchHardTripletLoss",
    "RegionRegularisedLoss",
    "SmoothTripletLoss",
    "TripletDotLoss",
    "batch_hard_loss",
    "build_loss",
    "region_cross_entropy",
    "smooth_triplet_loss",
    "triplet_dot_loss",
]

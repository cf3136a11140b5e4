"""Paper 004's dot-product triplet loss (eq. 3.4), on offline-mined triplets.

``L = sum_i max(0, a_i . n_i - a_i . p_i + m)`` with ``m = 0.1``. For unit vectors this is
half of the squared-distance triplet loss of eq. 3.2 with margin ``2m`` (eq. 3.3:
``||x - y||^2 = 2 - 2 x.y``), so it holds only if descriptors are L2-normalised: by default the
loss checks that they are (the region descriptor network normalises) and raises otherwise;
``normalise=True`` normalises them here instead. The paper sums over triplets; ``reduction``
can also be ``"mean"`` (the sum makes the step size grow with the number of triplets per batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from muselens.training.losses.inputs import (
    check_embeddings,
    check_labels,
    check_margin,
    check_reduction,
    check_triplets,
    check_unit_norm,
    reduce,
)

DEFAULT_MARGIN = 0.1  # paper 004, section 3.2.1
TRIPLET_REDUCTIONS = ("sum", "mean")


def triplet_dot_terms(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = DEFAULT_MARGIN
) -> torch.Tensor:
    """Per-triplet ``max(0, a.n - a.p + m)`` for rows of three ``(T, D)`` tensors, ``(T,)``."""
    for name, x in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        check_embeddings(x, name)
    if not anchor.shape == positive.shape == negative.shape:
        raise ValueError(f"anchor, positive and negative must have one shape, got {tuple(anchor.shape)}, "
                         f"{tuple(positive.shape)}, {tuple(negative.shape)}")
    margin = check_margin(margin)
    return F.relu((anchor * negative).sum(dim=1) - (anchor * positive).sum(dim=1) + margin)


def triplet_dot_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float = DEFAULT_MARGIN,
    reduction: str = "sum",
    normalise: bool = False,
) -> torch.Tensor:
    """Eq. 3.4 over the rows of ``(T, D)`` anchors, positives and negatives."""
    check_reduction(reduction, TRIPLET_REDUCTIONS)
    if normalise:
        anchor, positive, negative = (F.normalize(check_embeddings(x, name), dim=1) for name, x in
                                      (("anchor", anchor), ("positive", positive), ("negative", negative)))
    else:
        for name, x in (("anchor", anchor), ("positive", positive), ("negative", negative)):
            check_unit_norm(check_embeddings(x, name), name)
    return reduce(triplet_dot_terms(anchor, positive, negative, margin), reduction)


class TripletDotLoss(nn.Module):
    """Eq. 3.4 on a batch of embeddings and ``(T, 3)`` triplets indexing into it.

    The triplets come from :mod:`muselens.training.mining` (semi-hard, then hardest, over the
    whole training set); labels are checked against them so a mining bug cannot train silently.
    """

    requires_triplets = True

    def __init__(self, margin: float = DEFAULT_MARGIN, reduction: str = "sum", normalise: bool = False):
        super().__init__()
        self.margin = check_margin(margin)
        self.reduction = check_reduction(reduction, TRIPLET_REDUCTIONS)
        self.normalise = bool(normalise)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                triplets: torch.Tensor | None = None) -> torch.Tensor:
        check_embeddings(embeddings)
        labels = check_labels(labels, embeddings.shape[0])
        if triplets is None:
            raise ValueError("TripletDotLoss needs the mined (T, 3) triplets")
        a, p, n = check_triplets(triplets, labels).unbind(1)
        return triplet_dot_loss(embeddings[a], embeddings[p], embeddings[n], self.margin,
                                self.reduction, self.normalise)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}, normalise={self.normalise}"

"""Paper 004's full stage-3 loss (eq. 3.6): a metric loss plus alpha x the region cross-entropy.

The cross-entropy makes sure the ``k`` regions chosen by maximal activation stay correctly
classified: each region's logits against its image's label, averaged over the ``k`` regions and
over the images (eq. 3.6's ``alpha / N * 1/k * sum``, so the regulariser does not grow with the
batch while the triplet term, a sum, does). Eq. 3.6 writes the cross-entropy in its binary form
over one-hot targets; over mutually exclusive instances that is the softmax cross-entropy used
here. The images are those the batch's embeddings came from, each counted once however many
triplets it is in. With :class:`~muselens.training.losses.triplet.TripletDotLoss` as the metric
loss this is exactly eq. 3.6 (alpha = 1.0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from muselens.core import checks
from muselens.training.losses.inputs import check_embeddings, check_labels

DEFAULT_ALPHA = 1.0  # paper 004, section 3.4.2


def region_cross_entropy(region_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy of ``(N, k, classes)`` region logits against ``(N,)`` image labels."""
    if not isinstance(region_logits, torch.Tensor) or not region_logits.is_floating_point():
        raise TypeError("region_logits must be a floating-point torch.Tensor")
    if region_logits.ndim != 3 or min(region_logits.shape) < 1:
        raise ValueError(f"region_logits must be (N, k, classes), got shape {tuple(region_logits.shape)}")
    n, k, classes = region_logits.shape
    labels = check_labels(labels, n)
    if int(labels.min()) < 0 or int(labels.max()) >= classes:
        raise ValueError(f"labels must lie in [0, {classes}) for {classes} classes")
    return F.cross_entropy(region_logits.reshape(n * k, classes), labels.repeat_interleave(k))


class RegionRegularisedLoss(nn.Module):
    """``metric_loss(embeddings, labels, triplets) + alpha * region_cross_entropy(region_logits, labels)``."""

    def __init__(self, metric_loss: nn.Module, alpha: float = DEFAULT_ALPHA):
        super().__init__()
        if not isinstance(metric_loss, nn.Module):
            raise TypeError(f"metric_loss must be an nn.Module, got {type(metric_loss).__name__}")
        checks.number(alpha, "alpha", low=0)
        self.metric_loss = metric_loss
        self.alpha = float(alpha)

    @property
    def requires_triplets(self) -> bool:
        return bool(getattr(self.metric_loss, "requires_triplets", False))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, region_logits: torch.Tensor,
                triplets: torch.Tensor | None = None) -> torch.Tensor:
        check_embeddings(embeddings)
        if isinstance(region_logits, torch.Tensor) and region_logits.ndim >= 1 \
                and region_logits.shape[0] != embeddings.shape[0]:
            raise ValueError(f"region_logits are for {region_logits.shape[0]} images, "
                             f"embeddings for {embeddings.shape[0]}")
        metric = self.metric_loss(embeddings, labels, triplets)
        return metric + self.alpha * region_cross_entropy(region_logits, labels)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

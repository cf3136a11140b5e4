"""Paper 002's smooth triplet loss (Vo and Hays, section 3.4), over all triplets of a P x K batch.

``L = 1/M sum_{(a,p,n)} log(1 + exp(d(a,p) - d(a,n)))`` over the ``M`` valid triplets of the
batch (no mining), with ``d`` the *squared* Euclidean distance between features normalised to
unit length and then scaled by 4 ("as suggested by [29]"). The extracted text of 002 prints
``d(a,n) - d(a,p)``; with ``d`` a distance that would pull negatives closer, so the sign here is
the one of their reference [29] and of Hermans et al.'s soft margin: positive minus negative.
On unit vectors scaled by ``s``, ``d(a,p) - d(a,n) = 2 s^2 (a.n - a.p)``: the scale sets how
sharp the soft margin is. Enumerating the triplets takes a ``B^3`` boolean mask (2 MB at B = 128).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from muselens.core import checks
from muselens.training.losses.inputs import check_embeddings, check_labels
from muselens.training.losses.in_batch import all_triplets, pairwise_distances

DEFAULT_SCALE = 4.0  # paper 002: "normalize the image feature to have unit magnitude and then scale it by 4"


def _check_scale(scale: object) -> float:
    return checks.number(scale, "scale", low=0, low_open=True)


def smooth_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """Mean softplus of ``d_ap - d_an`` over all valid triplets of a labelled ``(B, D)`` batch."""
    check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0])
    scale = _check_scale(scale)
    distances = pairwise_distances(scale * F.normalize(embeddings, p=2.0, dim=1), squared=True)
    a, p, n = all_triplets(labels).unbind(1)
    return F.softplus(distances[a, p] - distances[a, n]).mean()


class SmoothTripletLoss(nn.Module):
    """:func:`smooth_triplet_loss` as a module; triplets are all those of the batch."""

    requires_triplets = False

    def __init__(self, scale: float = DEFAULT_SCALE):
        super().__init__()
        self.scale = _check_scale(scale)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                triplets: torch.Tensor | None = None) -> torch.Tensor:
        if triplets is not None:
            raise ValueError("SmoothTripletLoss uses every triplet of the batch; do not pass triplets")
        return smooth_triplet_loss(embeddings, labels, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"

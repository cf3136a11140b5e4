"""Triplets formed inside a P x K batch, in feature space (papers 002 and 003).

Pairwise distances of the batch's embeddings, and the two ways of picking triplets from them:
``hardest_triplets`` (for each anchor its farthest positive and nearest negative: the batch-hard
triplets of Hermans et al., paper 003's [12]) and ``all_triplets`` (every valid (a, p, n), as
paper 003's section 5.2 and paper 002's loss enumerate them). Indices refer to batch rows.
"""

from __future__ import annotations

import torch

from muselens.training.losses.inputs import check_embeddings, check_labels


def pairwise_distances(x: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """Euclidean (or squared Euclidean) distances between the rows of ``(B, D)``, ``(B, B)``.

    Computed from the Gram matrix (``B*B`` memory, not ``B*B*D``); rounding negatives are clamped
    to 0 and the diagonal is exactly 0. The square root has zero gradient at zero distance
    (duplicates), where the true derivative is undefined.
    """
    check_embeddings(x)
    gram = x @ x.T
    sq_norms = gram.diagonal()
    d2 = (sq_norms[:, None] + sq_norms[None, :] - 2.0 * gram).clamp(min=0.0)
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    d2 = d2.masked_fill(eye, 0.0)
    if squared:
        return d2
    zero = d2 == 0
    return torch.sqrt(torch.where(zero, torch.ones_like(d2), d2)).masked_fill(zero, 0.0)


def label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive, negative)`` boolean ``(B, B)`` masks: same label and not itself; other label."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def _require_triplets(positive: torch.Tensor, negative: torch.Tensor) -> None:
    if not bool((positive.any(dim=1) & negative.any(dim=1)).any()):
        raise ValueError("the batch has no valid triplet: it needs a label with at least two images "
                         "and at least two labels (sample P x K batches with P >= 2, K >= 2)")


def hardest_triplets(distances: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """For each anchor with a positive and a negative: its farthest positive and nearest negative.

    Returns ``(T, 3)`` int64 rows ``(anchor, positive, negative)``, anchors ascending; ties go to
    the smaller index. Selection uses detached distances (the choice is not differentiated).
    """
    if not isinstance(distances, torch.Tensor) or distances.ndim != 2 or distances.shape[0] != distances.shape[1]:
        raise ValueError("distances must be a square (B, B) tensor")
    labels = check_labels(labels, distances.shape[0])
    positive, negative = label_masks(labels)
    _require_triplets(positive, negative)
    d = distances.detach()
    hardest_pos = d.masked_fill(~positive, float("-inf")).argmax(dim=1)
    hardest_neg = d.masked_fill(~negative, float("inf")).argmin(dim=1)
    anchors = torch.nonzero(positive.any(dim=1) & negative.any(dim=1)).squeeze(1)
    return torch.stack((anchors, hardest_pos[anchors], hardest_neg[anchors]), dim=1)


def all_triplets(labels: torch.Tensor) -> torch.Tensor:
    """Every valid ``(anchor, positive, negative)`` of the batch, ``(T, 3)`` int64, lexicographic."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        raise ValueError("labels must be a 1-D tensor")
    labels = check_labels(labels, labels.shape[0])
    positive, negative = label_masks(labels)
    _require_triplets(positive, negative)
    return torch.nonzero(positive[:, :, None] & negative[:, None, :])

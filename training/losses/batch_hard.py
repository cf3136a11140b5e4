"""Paper 003's in-batch triplet losses: hinge, squared and soft, on P x K batches.

Features are L2-normalised and compared by Euclidean distance (paper 003, section 5:
``d = ||f_a/|f_a| - f_p/|f_p|||_2``). For each triplet, with ``m`` the margin:

* ``"hinge"``:   ``max(0, d_ap - d_an + m)``; 003 gives no value for ``m``: 0.1, the project's
  margin.
* ``"squared"``: ``max(0, d_ap^2 - d_an^2 + m)``, paper 003's "square hinge": the hinge on
  *squared distances* (not the square of the hinge). Default ``m = 0.2``: on unit vectors this
  is exactly twice paper 004's dot-product loss with ``m = 0.1`` (``d^2 = 2 - 2 a.b``).
* ``"soft"``:    ``log(1 + exp(d_ap - d_an + m))`` (softplus; Hermans et al.'s soft margin,
  003's [12]), default ``m = 0``.
* ``"soft-pn"``: paper 003's own "soft" loss, ``d_ap + log(exp(m - d_an) + exp(m - d_pn))``,
  which also pushes the positive from the negative. As written, ``m`` only shifts the value
  and changes no gradient; default ``m = 0``.

Triplets (``selection``): ``"hardest"`` (default) takes for each anchor its farthest positive and
nearest negative, the batch-hard triplets of Hermans et al.; ``"all"`` takes every valid triplet,
as 003's section 5.2 literally enumerates them. Reduction: ``"mean-nonzero"`` (003's
``1/|S| sum_S`` over triplets with non-zero loss; the default for the hinges), ``"mean"`` (the
default for the soft losses, which are never zero) or ``"sum"``.
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
    reduce,
)
from muselens.training.losses.in_batch import all_triplets, hardest_triplets, pairwise_distances

KINDS = ("hinge", "squared", "soft", "soft-pn")
SELECTIONS = ("hardest", "all")
DEFAULT_MARGINS = {"hinge": 0.1, "squared": 0.2, "soft": 0.0, "soft-pn": 0.0}
DEFAULT_REDUCTIONS = {"hinge": "mean-nonzero", "squared": "mean-nonzero", "soft": "mean", "soft-pn": "mean"}


def _check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind  # type: ignore[return-value]


def triplet_terms(distances: torch.Tensor, triplets: torch.Tensor, kind: str, margin: float) -> torch.Tensor:
    """Per-triplet losses ``(T,)`` from a ``(B, B)`` distance matrix (squared for ``"squared"``)."""
    kind = _check_kind(kind)
    margin = check_margin(margin)
    a, p, n = triplets.unbind(1)
    d_ap, d_an = distances[a, p], distances[a, n]
    if kind in ("hinge", "squared"):
        return F.relu(d_ap - d_an + margin)
    if kind == "soft":
        return F.softplus(d_ap - d_an + margin)
    d_pn = distances[p, n]
    return d_ap + margin + torch.logsumexp(torch.stack((-d_an, -d_pn)), dim=0)


def batch_hard_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    kind: str = "hinge",
    margin: float | None = None,
    selection: str = "hardest",
    reduction: str | None = None,
    normalise: bool = True,
) -> torch.Tensor:
    """Paper 003's loss of ``kind`` over the triplets of a labelled ``(B, D)`` batch."""
    check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0])
    kind = _check_kind(kind)
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    margin = DEFAULT_MARGINS[kind] if margin is None else check_margin(margin)
    reduction = check_reduction(DEFAULT_REDUCTIONS[kind] if reduction is None else reduction)
    x = F.normalize(embeddings, p=2.0, dim=1) if normalise else embeddings
    distances = pairwise_distances(x, squared=kind == "squared")
    triplets = hardest_triplets(distances, labels) if selection == "hardest" else all_triplets(labels)
    return reduce(triplet_terms(distances, triplets, kind, margin), reduction)


class BatchHardTripletLoss(nn.Module):
    """:func:`batch_hard_loss` as a module; triplets are mined inside each batch, not given."""

    requires_triplets = False

    def __init__(self, kind: str = "hinge", margin: float | None = None, selection: str = "hardest",
                 reduction: str | None = None, normalise: bool = True):
        super().__init__()
        self.kind = _check_kind(kind)
        self.margin = DEFAULT_MARGINS[self.kind] if margin is None else check_margin(margin)
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        self.selection = selection
        self.reduction = check_reduction(DEFAULT_REDUCTIONS[self.kind] if reduction is None else reduction)
        self.normalise = bool(normalise)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                triplets: torch.Tensor | None = None) -> torch.Tensor:
        if triplets is not None:
            raise ValueError("BatchHardTripletLoss forms its triplets inside the batch; do not pass triplets")
        return batch_hard_loss(embeddings, labels, self.kind, self.margin, self.selection,
                               self.reduction, self.normalise)

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, margin={self.margin}, selection={self.selection!r}, "
                f"reduction={self.reduction!r}, normalise={self.normalise}")

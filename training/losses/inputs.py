"""What the losses take, checked the same way by each: embedding and label tensors, index triplets,
the reduction and the margin (plain numbers go through :mod:`muselens.core.checks`)."""

from __future__ import annotations

import torch

from muselens.core import checks

REDUCTIONS = ("sum", "mean", "mean-nonzero")


def check_embeddings(x: object, name: str = "embeddings") -> torch.Tensor:
    """A finite floating-point ``(B, D)`` tensor with ``D >= 1``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must be (B, D) with D >= 1, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return x


def check_labels(labels: object, batch: int) -> torch.Tensor:
    """An integer ``(B,)`` label tensor matching a batch of ``batch`` embeddings."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.shape != (batch,):
        raise ValueError(f"labels must be ({batch},), got shape {tuple(labels.shape)}")
    return labels


def check_unit_norm(x: torch.Tensor, name: str, atol: float = 1e-4) -> None:
    """Refuse rows whose L2 norm is not 1 (within ``atol``): the dot-product loss assumes it."""
    norms = x.detach().norm(p=2, dim=-1)
    worst = (norms - 1).abs().max() if norms.numel() else torch.tensor(0.0)
    if float(worst) > atol:
        raise ValueError(f"{name} must be L2-normalised (row norms 1 within {atol}); the worst row "
                         f"is off by {float(worst):.3g}; normalise first or pass normalise=True")


def check_reduction(reduction: object, allowed: tuple[str, ...] = REDUCTIONS) -> str:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")
    return reduction  # type: ignore[return-value]


def check_margin(margin: object) -> float:
    return checks.number(margin, "margin", low=0)


def check_triplets(triplets: object, labels: torch.Tensor) -> torch.Tensor:
    """``(T, 3)`` int64 indices (anchor, positive, negative) into the batch, consistent with labels."""
    if not isinstance(triplets, torch.Tensor) or triplets.dtype != torch.int64:
        raise TypeError("triplets must be an int64 torch.Tensor of (anchor, positive, negative) indices")
    if triplets.ndim != 2 or triplets.shape[1] != 3:
        raise ValueError(f"triplets must be (T, 3), got shape {tuple(triplets.shape)}")
    batch = labels.shape[0]
    if triplets.numel() and (int(triplets.min()) < 0 or int(triplets.max()) >= batch):
        raise ValueError(f"triplet indices must lie in [0, {batch})")
    a, p, n = triplets.unbind(1)
    if bool((labels[a] != labels[p]).any()):
        raise ValueError("every triplet's positive must share its anchor's label")
    if bool((a == p).any()):
        raise ValueError("a triplet's positive must be another image than its anchor")
    if bool((labels[a] == labels[n]).any()):
        raise ValueError("every triplet's negative must have another label than its anchor")
    return triplets


def reduce(terms: torch.Tensor, reduction: str) -> torch.Tensor:
    """Sum, mean, or mean over the non-zero terms (paper 003's ``1/|S| sum_S``; 0 when none)."""
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        if terms.numel() == 0:
            return terms.sum()
        return terms.mean()
    nonzero = int((terms != 0).sum())
    return terms.sum() / max(nonzero, 1)

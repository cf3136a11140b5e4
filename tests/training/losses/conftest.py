"""Shared helpers for the loss tests: seeded P x K batches."""

from __future__ import annotations

import torch

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def pk_batch(p: int, k: int, dim: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``p`` labels x ``k`` images of random ``dim``-d embeddings, labels interleaved (not sorted)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(p * k, dim, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.arange(p).repeat(k)
    return x, labels


def separated_batch(p: int, k: int, dtype: torch.dtype, spread: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors tightly around ``p`` orthogonal axes: positives far closer than negatives."""
    g = torch.Generator().manual_seed(1)
    centres = torch.eye(p, dtype=torch.float64)
    labels = torch.arange(p).repeat_interleave(k)
    x = centres[labels] + spread * torch.randn(p * k, p, generator=g, dtype=torch.float64)
    return torch.nn.functional.normalize(x, dim=1).to(dtype), labels

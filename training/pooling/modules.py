"""Thin ``nn.Module`` wrappers over :mod:`muselens.training.pooling.functional`."""

from __future__ import annotations

import torch
from torch import nn

from muselens.core import checks
from muselens.training.pooling import functional as PF


class MAC(nn.Module):
    """Global max pooling: ``(N, C, H, W) -> (N, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return PF.mac(x)


class SPoC(nn.Module):
    """Global average pooling: ``(N, C, H, W) -> (N, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return PF.spoc(x)


class GeM(nn.Module):
    """Generalised-mean pooling; ``learnable=True`` makes ``p`` a trainable parameter."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = False):
        super().__init__()
        if not (isinstance(p, (int, float)) and p > 0):
            raise ValueError(f"p must be a positive number, got {p!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.eps = float(eps)
        if learnable:
            self.p = nn.Parameter(torch.tensor(float(p)))
        else:
            self.register_buffer("p", torch.tensor(float(p)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return PF.gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.4f}, eps={self.eps}"


class RMAC(nn.Module):
    """Regional MAC over ``levels`` levels of the Tolias region grid."""

    def __init__(self, levels: int = 3, eps: float = 1e-6):
        super().__init__()
        checks.positive_int(levels, "levels")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.levels = levels
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return PF.rmac(x, self.levels, self.eps)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, eps={self.eps}"

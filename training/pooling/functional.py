"""Global pooling of a conv feature map into one vector per image: MAC, SPoC, GeM, R-MAC.

Pure tensor functions, ``(N, C, H, W) -> (N, C)``, kept apart from their ``nn.Module`` wrappers
so export can trace them and tests can call them directly. The outputs are *not* normalised;
the descriptor extractor L2-normalises.

- MAC  (max of each channel; Tolias et al. 2016; paper 002's "pool5.3" MAX pooling),
- SPoC (mean of each channel; Babenko & Lempitsky 2015),
- GeM  (generalised mean, p=3; Radenovic et al. 2018),
- R-MAC (sum of L2-normalised MACs over a multi-scale grid of square regions; Tolias et al.).
"""

from __future__ import annotations

from muselens.core import checks
import math

import torch

# R-MAC region sampling (Tolias et al.): square regions of side 2*min(H, W)/(l+1) at level l,
# about 40% overlap between neighbours; the long side gets extra regions chosen among 1..6.
RMAC_OVERLAP = 0.4
RMAC_EXTRA_STEPS = (2, 3, 4, 5, 6, 7)


def _check_map(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"feature map must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"feature map must be (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"feature map has an empty spatial extent: {tuple(x.shape)}")


def mac(x: torch.Tensor) -> torch.Tensor:
    """Maximum activation of each channel: ``(N, C, H, W) -> (N, C)``."""
    _check_map(x)
    return x.amax(dim=(2, 3))


def spoc(x: torch.Tensor) -> torch.Tensor:
    """Mean activation of each channel (sum pooling up to a constant): ``(N, C)``."""
    _check_map(x)
    return x.mean(dim=(2, 3))


def gem(x: torch.Tensor, p: float | torch.Tensor = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean ``(mean(clamp(x, eps)^p))^(1/p)`` per channel; p=1 is SPoC, p->inf is MAC.

    Values are clamped to ``eps`` first so the power is defined (activations are ReLU outputs).
    ``p`` may be a tensor (a learnable GeM).
    """
    _check_map(x)
    if isinstance(p, torch.Tensor):
        if p.numel() != 1:
            raise ValueError(f"p must be a scalar, got shape {tuple(p.shape)}")
        p_check = float(p.detach())
    else:
        p_check = float(p)
    if not (math.isfinite(p_check) and p_check > 0):
        raise ValueError(f"p must be a positive finite number, got {p_check}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    return x.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def rmac_regions(height: int, width: int, levels: int = 3) -> list[tuple[int, int, int]]:
    """The R-MAC regions of an ``height x width`` map as ``(top, left, side)`` squares.

    Level ``l`` (1..levels) uses squares of side ``floor(2 w / (l + 1))``, ``w = min(H, W)``,
    ``l`` of them along the short side and ``l + extra`` along the long side, evenly spread
    from edge to edge (start ``floor(i * step)``). ``extra`` is the number of additional
    regions (1..6) whose overlap on the long side is closest to 40%. Regions of side 0 (tiny
    maps at deep levels) are left out. This is the grid of cnnimageretrieval-pytorch's rmac.
    """
    for name, value in (("height", height), ("width", width), ("levels", levels)):
        checks.positive_int(value, name)
    w = min(height, width)
    long_side = max(height, width)
    extra = 0
    if height != width:
        errors = [abs((w * w - w * (long_side - w) / (s - 1)) / (w * w) - RMAC_OVERLAP) for s in RMAC_EXTRA_STEPS]
        extra = errors.index(min(errors)) + 1
    extra_w = extra if height < width else 0
    extra_h = extra if height > width else 0

    def starts(length: int, side: int, count: int) -> list[int]:
        step = 0.0 if count == 1 else (length - side) / (count - 1)
        return [int(math.floor(i * step)) for i in range(count)]

    regions: list[tuple[int, int, int]] = []
    for level in range(1, levels + 1):
        side = (2 * w) // (level + 1)
        if side == 0:
            continue
        for top in starts(height, side, level + extra_h):
            for left in starts(width, side, level + extra_w):
                regions.append((top, left, side))
    return regions


def rmac(x: torch.Tensor, levels: int = 3, eps: float = 1e-6) -> torch.Tensor:
    """R-MAC: the L2-normalised MAC of the whole map plus those of every region, summed: ``(N, C)``.

    Including the whole map once (besides level 1) follows cnnimageretrieval-pytorch.
    """
    _check_map(x)
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")

    def normalised_mac(t: torch.Tensor) -> torch.Tensor:
        v = t.amax(dim=(2, 3))
        return v / (v.norm(p=2, dim=1, keepdim=True) + eps)

    out = normalised_mac(x)
    for top, left, side in rmac_regions(int(x.shape[2]), int(x.shape[3]), levels):
        out = out + normalised_mac(x[:, :, top : top + side, left : left + side])
    return out

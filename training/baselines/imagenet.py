"""Global image descriptors from a backbone: the "IM" (ImageNet, no fine-tuning) baselines.

An image is resized (short side S at its true aspect ratio, long side capped at 2 S, as paper
004 feeds its FCN; or S x S for the classic classification input), normalised by the
backbone's :class:`~muselens.core.preprocess.PreprocessContract`, passed through the
convolutional body, pooled (MAC, SPoC, GeM, R-MAC) and L2-normalised. Multi-scale descriptors
average the L2-normalised descriptors of the scales ``S * (1, 1/sqrt 2, 1/2)`` and normalise
again.

With ``output="pooled"`` this is the "pooled-layer" descriptor of paper 002 (Vo & Hays): the
pooled last conv layer, the layer before any embedding/classifier; their pool5.3 is MAX
pooling, i.e. ``im-mac``. With ``output="logits"`` it is paper 004's "IM" baseline (Table 4.2):
the normalised 1000-d network output on the image scaled to the network's own square size.
Images of the same resized shape are batched; each shape is its own batch group.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from muselens.core import checks
from muselens.core.preprocess import prepare_short_side, prepare_square, short_side_size
from muselens.training.backbones.base import Backbone
from muselens.training.backbones.backbone_registry import BACKBONES, DEFAULT_BACKBONE, build_backbone
from muselens.training.pooling.pooling_registry import POOLINGS, build_pooling

DEFAULT_SHORT_SIDE = 448  # paper 004: images scaled to a smaller side of 448 (and 224) pixels
DEFAULT_MAX_ASPECT = 2.0  # paper 004: "a maximal aspect ratio of 2.0"
MULTI_SCALE = (1.0, 1.0 / math.sqrt(2.0), 0.5)
RESIZE_MODES = ("short_side", "square")
OUTPUTS = ("pooled", "logits")


@dataclass(frozen=True)
class IMMethod:
    """One ImageNet-baseline descriptor: which pooling, which output, how images are resized."""

    name: str
    pooling: str | None
    output: str
    resize: str
    summary: str


IM_METHODS: dict[str, IMMethod] = {
    m.name: m
    for m in (
        IMMethod("im-mac", "mac", "pooled", "short_side",
                 "max-pooled last conv layer (paper 002's pooled-layer descriptor, MAX as pool5.3)"),
        IMMethod("im-spoc", "spoc", "pooled", "short_side", "average-pooled last conv layer"),
        IMMethod("im-gem", "gem", "pooled", "short_side", "GeM (p=3) pooled last conv layer"),
        IMMethod("im-rmac", "rmac", "pooled", "short_side", "R-MAC (3 levels) of the last conv layer"),
        IMMethod("im-logits", None, "logits", "square",
                 "normalised 1000-d ImageNet output at the network's square input size (paper 004 'IM')"),
    )
}


def l2_normalise(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to unit L2 norm (an all-zero row stays zero)."""
    return x / x.norm(p=2, dim=1, keepdim=True).clamp(min=eps)


def _check_images(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise TypeError("pass a sequence of H x W x 3 images, not a single image")
    out = list(images)
    for i, image in enumerate(out):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise TypeError(f"image {i} must be a uint8 numpy array, got {type(image).__name__} "
                            f"{getattr(image, 'dtype', '')}")
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"image {i} must be H x W x 3 (RGB), got shape {image.shape}")
    return out


class GlobalDescriptorExtractor:
    """RGB uint8 images -> L2-normalised float32 descriptors ``(N, D)``, single- or multi-scale.

    ``size`` is S (the short side, or the square side for ``resize="square"``); each scale s uses
    ``round(S * s)``. The backbone (and pooling) are moved to ``device``; the backbone is put in
    eval mode while extracting and its previous mode restored afterwards.
    """

    def __init__(
        self,
        backbone: Backbone,
        pooling: nn.Module | str | None,
        *,
        size: int = DEFAULT_SHORT_SIDE,
        scales: Sequence[float] = (1.0,),
        max_aspect: float | None = DEFAULT_MAX_ASPECT,
        resize: str = "short_side",
        output: str = "pooled",
        device: str | torch.device = "cpu",
        batch_size: int = 16,
    ):
        if not isinstance(backbone, Backbone):
            raise TypeError(f"backbone must be a Backbone, got {type(backbone).__name__}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if output == "logits" and pooling is not None:
            raise ValueError("output='logits' uses the network's own average pooling; pass pooling=None")
        if output == "pooled" and pooling is None:
            raise ValueError(f"output='pooled' needs a pooling, one of {sorted(POOLINGS)}")
        if isinstance(pooling, str):
            pooling = build_pooling(pooling)
        if pooling is not None and not isinstance(pooling, nn.Module):
            raise TypeError(f"pooling must be an nn.Module, a registered name or None, got {type(pooling).__name__}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        checks.positive_int(size, "size")
        scales = tuple(float(s) for s in scales)
        if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
            raise ValueError(f"scales must be positive numbers, got {scales!r}")
        self.sizes = tuple(max(1, int(math.floor(size * s + 0.5))) for s in scales)
        if max_aspect is not None and not (isinstance(max_aspect, (int, float)) and math.isfinite(max_aspect)
                                           and max_aspect >= 1.0):
            raise ValueError(f"max_aspect must be None or a finite number >= 1, got {max_aspect!r}")
        checks.positive_int(batch_size, "batch_size")
        self.device = torch.device(device)
        self.backbone = backbone.to(self.device)
        self.pooling = pooling.to(self.device) if pooling is not None else None
        self.size = size
        self.scales = scales
        self.max_aspect = max_aspect
        self.resize = resize
        self.output = output
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return self.backbone.num_classes if self.output == "logits" else self.backbone.feature_dim

    def describe(self) -> dict[str, Any]:
        """What produced these descriptors, to write beside them."""
        return {
            "backbone": self.backbone.name,
            "pooling": None if self.pooling is None else repr(self.pooling),
            "output": self.output,
            "resize": self.resize,
            "size": self.size,
            "scales": list(self.scales),
            "sizes": list(self.sizes),
            "max_aspect": self.max_aspect,
            "dim": self.dim,
            "contract": self.backbone.contract.to_dict(),
        }

    def _target_shape(self, image: np.ndarray, size: int) -> tuple[int, int]:
        if self.resize == "square":
            return size, size
        return short_side_size(image.shape[0], image.shape[1], size, self.max_aspect)

    def _prepare(self, image: np.ndarray, size: int) -> np.ndarray:
        contract = self.backbone.contract
        if self.resize == "square":
            return prepare_square(image, contract, size)
        return prepare_short_side(image, contract, size, self.max_aspect)

    def _describe_batch(self, batch: torch.Tensor) -> torch.Tensor:
        fmap = self.backbone.features(batch)
        if self.output == "logits":
            vectors = self.backbone.logits_from_features(fmap)
        else:
            vectors = self.pooling(fmap)
        return l2_normalise(vectors.float())

    def _one_scale(self, images: list[np.ndarray], size: int) -> torch.Tensor:
        out = torch.empty((len(images), self.dim), dtype=torch.float32)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(self._target_shape(image, size), []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = np.concatenate([self._prepare(images[i], size) for i in chunk], axis=0)
                out[chunk] = self._describe_batch(torch.from_numpy(batch).to(self.device)).cpu()
        return out

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Descriptors of ``images`` (RGB uint8, any sizes) as float32 ``(N, dim)``, unit L2 norm."""
        images = _check_images(images)
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        was_training = self.backbone.training
        self.backbone.eval()
        if self.pooling is not None:
            self.pooling.eval()
        try:
            with torch.inference_mode():
                total = torch.zeros((len(images), self.dim), dtype=torch.float32)
                for size in self.sizes:
                    total += self._one_scale(images, size)
                descriptors = l2_normalise(total) if len(self.sizes) > 1 else total
        finally:
            self.backbone.train(was_training)
        return descriptors.numpy().astype(np.float32, copy=False)


def build_im_extractor(
    method: str,
    backbone: Backbone,
    *,
    size: int | None = None,
    multiscale: bool = False,
    max_aspect: float | None = DEFAULT_MAX_ASPECT,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> GlobalDescriptorExtractor:
    """The extractor of a registered IM method. ``size=None``: 448 for the pooled methods, the
    network's native square size for ``im-logits``; ``multiscale`` uses S * (1, 1/sqrt 2, 1/2)."""
    if method not in IM_METHODS:
        raise ValueError(f"unknown IM method {method!r}; expected one of {sorted(IM_METHODS)}")
    spec = IM_METHODS[method]
    if size is None:
        size = backbone.contract.native_size if spec.resize == "square" else DEFAULT_SHORT_SIDE
    return GlobalDescriptorExtractor(
        backbone,
        spec.pooling,
        size=size,
        scales=MULTI_SCALE if multiscale else (1.0,),
        max_aspect=max_aspect,
        resize=spec.resize,
        output=spec.output,
        device=device,
        batch_size=batch_size,
    )


def add_extractor_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose an IM descriptor, for any subcommand that extracts one."""
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default=DEFAULT_BACKBONE,
                        help="ImageNet backbone (default: %(default)s)")
    parser.add_argument("--method", choices=sorted(IM_METHODS), default="im-gem",
                        help="descriptor: pooling of the last conv layer, or the logits (default: %(default)s)")
    parser.add_argument("--size", type=int, default=None, metavar="S",
                        help=f"short side S in pixels ({DEFAULT_SHORT_SIDE}); for im-logits the square side "
                             "(the network's native size)")
    parser.add_argument("--multiscale", action="store_true",
                        help="average the descriptors at S, S/sqrt(2) and S/2")
    parser.add_argument("--max-aspect", type=float, default=DEFAULT_MAX_ASPECT,
                        help="cap the long side at this multiple of S (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default: %(default)s)")


def extractor_from_args(args: argparse.Namespace, *, pretrained: bool = True) -> GlobalDescriptorExtractor:
    """Build the extractor that :func:`add_extractor_arguments` describes."""
    return build_im_extractor(
        args.method,
        build_backbone(args.backbone, pretrained=pretrained),
        size=args.size,
        multiscale=args.multiscale,
        max_aspect=args.max_aspect,
        device=args.device,
        batch_size=args.batch_size,
    )

"""The one image preprocessing shared by training, evaluation and the serving runtime.

A network's ImageNet weights were trained on pixels prepared one particular way (value scale,
mean, std, channel order, interpolation). :class:`PreprocessContract` records that once; it
travels with every checkpoint, ONNX file and bundle (``to_dict``/``from_dict``), and the
functions here are the only place it is applied. Torch-free on purpose: the runtime uses it too.

Images are RGB ``uint8`` arrays of shape ``(H, W, 3)`` everywhere in muselens.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

from muselens.core import checks
# The interpolation names a contract may carry, and the OpenCV flag each one means.
INTERPOLATIONS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}

CHANNEL_ORDERS = ("RGB",)
# Shrinking to this share of the size or more is done with the contract's own interpolation, not
# area averaging: PIL's antialiasing filter there is the plain kernel widened by at most 1/0.85,
# and OpenCV's area averaging at a scale near 1 is 5-6x slower (800x450 to 796x448: 2.6 against
# 0.44 ms bilinear; 640x360 to 569x320: 1.3 against 0.24 ms). Measured on real photos, the two
# differ by 0.2-0.45 grey levels on average at 0.95-0.85 (0.57 at 0.8). A camera frame that the
# JPEG decoder already reduced near the recognition size (runtime/frames/encoded.py) is such a shrink.
AREA_BELOW_SCALE = 0.85


@dataclass(frozen=True)
class PreprocessContract:
    """How pixels become network input: ``((pixel * scale) - mean) / std``, RGB, NCHW float32.

    ``interpolation`` is the resampling the weights were trained with (timm's pretrained cfg).
    ``antialias`` makes shrinking use area averaging instead, as PIL-based training pipelines
    (which antialias) effectively did; enlarging, and shrinking by less than 1 - :data:`AREA_BELOW_SCALE`,
    always use ``interpolation``.
    ``stride`` is the network's total downsampling; ``native_size`` the square input size of
    its ImageNet training, used only where a method asks for the network's own input size.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float = 1.0 / 255.0
    interpolation: str = "bilinear"
    antialias: bool = True
    stride: int = 32
    native_size: int = 224
    channel_order: str = "RGB"

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 3:
                raise ValueError(f"{name} must be 3 numbers (R, G, B), got {value!r}")
            as_floats = tuple(float(v) for v in value)
            if not all(math.isfinite(v) for v in as_floats):
                raise ValueError(f"{name} must be finite, got {value!r}")
            object.__setattr__(self, name, as_floats)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std!r}")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive number, got {self.scale!r}")
        object.__setattr__(self, "scale", float(self.scale))
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"unknown interpolation {self.interpolation!r}; expected one of {sorted(INTERPOLATIONS)}"
            )
        checks.flag(self.antialias, "antialias")
        for name in ("stride", "native_size"):
            checks.positive_int(getattr(self, name), name)
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists, not tuples) for manifests and checkpoints."""
        out = asdict(self)
        out["mean"] = list(self.mean)
        out["std"] = list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessContract:
        """Rebuild a contract written by :meth:`to_dict`; unknown or missing keys are errors."""
        if not isinstance(data, dict):
            raise TypeError(f"contract must be a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown preprocessing contract keys: {sorted(unknown)}")
        missing = known - set(data)
        if missing:
            raise ValueError(f"preprocessing contract lacks keys: {sorted(missing)}")
        kwargs = dict(data)
        kwargs["mean"] = tuple(kwargs["mean"])
        kwargs["std"] = tuple(kwargs["std"])
        return cls(**kwargs)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3 (RGB), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image has no pixels (shape {image.shape})")


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def short_side_size(
    height: int, width: int, short: int, max_aspect: float | None = None
) -> tuple[int, int]:
    """Output ``(height, width)`` when the short side becomes ``short`` at the true aspect ratio.

    With ``max_aspect`` the long side is capped at ``round(short * max_aspect)``, which squashes
    very elongated images instead of letting them grow without bound (paper 004 uses 2.0).
    """
    checks.positive_int(height, "height")
    checks.positive_int(width, "width")
    checks.positive_int(short, "short")
    if max_aspect is not None and not (math.isfinite(max_aspect) and max_aspect >= 1.0):
        raise ValueError(f"max_aspect must be a finite number >= 1, got {max_aspect!r}")
    long_in, short_in = max(height, width), min(height, width)
    long_out = max(1, _round_half_up(long_in * short / short_in))
    if max_aspect is not None:
        long_out = min(long_out, max(short, _round_half_up(short * max_aspect)))
    if height <= width:
        return short, long_out
    return long_out, short


def _resize(image: np.ndarray, height: int, width: int, interpolation: str, antialias: bool) -> np.ndarray:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {sorted(INTERPOLATIONS)}")
    in_h, in_w = image.shape[:2]
    if (height, width) == (in_h, in_w):
        return image
    shrinking = height <= in_h and width <= in_w and min(height / in_h, width / in_w) < AREA_BELOW_SCALE
    flag = cv2.INTER_AREA if (antialias and shrinking) else INTERPOLATIONS[interpolation]
    return cv2.resize(image, (width, height), interpolation=flag)


def resize_short_side(
    image_rgb_uint8: np.ndarray,
    short: int,
    max_aspect: float | None = None,
    *,
    interpolation: str = "bilinear",
    antialias: bool = True,
) -> np.ndarray:
    """Resize so the short side is ``short`` pixels, keeping the aspect ratio (see :func:`short_side_size`)."""
    _check_image(image_rgb_uint8)
    h, w = short_side_size(image_rgb_uint8.shape[0], image_rgb_uint8.shape[1], short, max_aspect)
    return _resize(image_rgb_uint8, h, w, interpolation, antialias)


def resize_exact(
    image_rgb_uint8: np.ndarray,
    height: int,
    width: int,
    *,
    interpolation: str = "bilinear",
    antialias: bool = True,
) -> np.ndarray:
    """Resize to exactly ``height x width``, ignoring the aspect ratio (the classic 224x224 input)."""
    _check_image(image_rgb_uint8)
    checks.positive_int(height, "height")
    checks.positive_int(width, "width")
    return _resize(image_rgb_uint8, height, width, interpolation, antialias)


def to_network_input(image_rgb_uint8: np.ndarray, contract: PreprocessContract) -> np.ndarray:
    """Normalise an RGB uint8 image into a float32 ``(1, 3, H, W)`` array (no resizing)."""
    if not isinstance(contract, PreprocessContract):
        raise TypeError(f"contract must be a PreprocessContract, got {type(contract).__name__}")
    _check_image(image_rgb_uint8)
    mean = np.asarray(contract.mean, dtype=np.float32) / np.float32(contract.scale)
    inv_std = np.float32(contract.scale) / np.asarray(contract.std, dtype=np.float32)
    x = (image_rgb_uint8.astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def prepare_short_side(
    image_rgb_uint8: np.ndarray,
    contract: PreprocessContract,
    short: int,
    max_aspect: float | None = None,
) -> np.ndarray:
    """Resize to short side ``short`` with the contract's resampling, then normalise: (1, 3, H, W)."""
    resized = resize_short_side(
        image_rgb_uint8, short, max_aspect,
        interpolation=contract.interpolation, antialias=contract.antialias,
    )
    return to_network_input(resized, contract)


def prepare_square(image_rgb_uint8: np.ndarray, contract: PreprocessContract, size: int) -> np.ndarray:
    """Resize to ``size x size`` (aspect ignored) with the contract's resampling, then normalise."""
    resized = resize_exact(
        image_rgb_uint8, size, size,
        interpolation=contract.interpolation, antialias=contract.antialias,
    )
    return to_network_input(resized, contract)

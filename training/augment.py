"""Training-time augmentation of RGB uint8 photos, before the shared preprocessing.

Paper 004 (3.1.1) fine-tunes with fewer than 10 photos per artwork and augments with a rotation
by any angle, an independent scale of each axis in [0.75, 1.25] and a horizontal flip with
probability 0.5. Museum queries add two things the paper's list lacks: lighting changes (colour
jitter) and detail views of part of an artwork (random crops of 30-100 % of the image).

Every random choice is drawn once by :func:`sample_augment_params` from a numpy ``Generator``
the caller passes in, then applied by :func:`apply_augment_params`; the same generator state
gives the same image. The pipeline order is crop, scale, colour, flip, rotate: the rotation
comes last and expands its canvas, so it never cuts off a corner of what the crop kept.

:func:`cap_aspect_with_noise` is the stage-2 aspect-ratio limit of paper 004 (3.4.1).
:func:`phone_view` makes a second photo out of one (stage 3's positives for an artwork that
has a single photo): what a visitor's phone makes of the photo
(:func:`muselens.core.synthetic.phone.phone_view`), then this augmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from muselens.core import checks
from muselens.core.synthetic import phone

FILL_MODES = ("mean", "reflect", "replicate", "black")
_BORDER = {"reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE}
# ITU-R BT.601 luma, the weights OpenCV's RGB2GRAY uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not (math.isfinite(a) and math.isfinite(b) and low <= a <= b <= high):
        raise ValueError(f"{name} must satisfy {low} <= min <= max <= {high}, got {value!r}")
    return a, b


def _check_unit(name: str, value: float, high: float = 1.0) -> float:
    return checks.number(value, name, low=0, high=high)


@dataclass(frozen=True)
class AugmentConfig:
    """What to randomise and by how much; the defaults are paper 004's values plus museum extras.

    ``max_rotation`` degrees: the angle is uniform in ``[-max_rotation, max_rotation]``; 180
    (the default) is the paper's "any angle is chosen with the same probability".
    ``scale_range``: each axis is scaled by its own factor drawn from this range (paper).
    ``flip_p``: probability of a horizontal flip (paper: 0.5).
    ``brightness``/``contrast``/``saturation``: factors drawn from ``[1 - v, 1 + v]``;
    ``hue``: a shift of the hue circle drawn from ``[-hue, hue]`` (fraction of the circle).
    ``crop_p``: probability of keeping only a sub-region whose area is a fraction in
    ``crop_area`` of the image and whose aspect ratio is the image's times a factor in
    ``crop_ratio`` (log-uniform); a detail view of the artwork.
    ``fill``: what the rotation puts in the expanded canvas' corners: the image's mean colour,
    a reflection or replication of its border, or black.
    """

    max_rotation: float = 180.0
    scale_range: tuple[float, float] = (0.75, 1.25)
    flip_p: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.02
    crop_p: float = 0.5
    crop_area: tuple[float, float] = (0.3, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    fill: str = "mean"

    def __post_init__(self) -> None:
        _check_unit("max_rotation", self.max_rotation, 180.0)
        object.__setattr__(self, "scale_range", _check_range("scale_range", self.scale_range, 1e-3, 1e3))
        for name in ("flip_p", "brightness", "contrast", "saturation", "crop_p"):
            _check_unit(name, getattr(self, name))
        _check_unit("hue", self.hue, 0.5)
        object.__setattr__(self, "crop_area", _check_range("crop_area", self.crop_area, 1e-6, 1.0))
        if self.crop_area[0] <= 0:
            raise ValueError(f"crop_area must be positive, got {self.crop_area!r}")
        object.__setattr__(self, "crop_ratio", _check_range("crop_ratio", self.crop_ratio, 1e-3, 1e3))
        if self.fill not in FILL_MODES:
            raise ValueError(f"unknown fill {self.fill!r}; expected one of {FILL_MODES}")

    @classmethod
    def identity(cls) -> AugmentConfig:
        """No augmentation at all: for evaluation passes and exact tests."""
        return cls(max_rotation=0.0, scale_range=(1.0, 1.0), flip_p=0.0, brightness=0.0,
                   contrast=0.0, saturation=0.0, hue=0.0, crop_p=0.0)


@dataclass(frozen=True)
class AugmentParams:
    """One draw of every random choice; ``crop`` is ``(top, left, height, width)`` or None."""

    crop: tuple[int, int, int, int] | None
    scale_x: float
    scale_y: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    flip: bool
    angle: float


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be H x W x 3 (RGB) with pixels, got shape {image.shape}")


def _check_rng(rng: np.random.Generator) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")


def sample_crop(
    height: int, width: int, area: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A random ``(top, left, h, w)`` covering a fraction in ``area`` of the image.

    The crop's aspect ratio is the image's own times a log-uniform factor in ``ratio``, so an
    area fraction of 1 with factor 1 is the whole image whatever its shape.
    """
    frac = rng.uniform(area[0], area[1])
    factor = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    pixels = frac * height * width
    aspect = (width / height) * factor  # w / h of the crop
    h = int(min(height, max(1, round(math.sqrt(pixels / aspect)))))
    w = int(min(width, max(1, round(math.sqrt(pixels * aspect)))))
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    return top, left, h, w


def sample_augment_params(height: int, width: int, config: AugmentConfig, rng: np.random.Generator) -> AugmentParams:
    """Draw every random choice for an image of ``height x width``."""
    if not isinstance(config, AugmentConfig):
        raise TypeError(f"config must be an AugmentConfig, got {type(config).__name__}")
    _check_rng(rng)
    crop = None
    if rng.uniform() < config.crop_p:
        crop = sample_crop(height, width, config.crop_area, config.crop_ratio, rng)
    lo, hi = config.scale_range
    scale_x, scale_y = (float(v) for v in rng.uniform(lo, hi, size=2))

    def factor(v: float) -> float:
        return float(rng.uniform(1.0 - v, 1.0 + v))

    brightness, contrast, saturation = factor(config.brightness), factor(config.contrast), factor(config.saturation)
    hue = float(rng.uniform(-config.hue, config.hue))
    flip = bool(rng.uniform() < config.flip_p)
    angle = float(rng.uniform(-config.max_rotation, config.max_rotation))
    return AugmentParams(crop, scale_x, scale_y, brightness, contrast, saturation, hue, flip, angle)


def crop(image: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The sub-image ``[top:top+height, left:left+width]`` (a copy), checked to lie inside."""
    _check_image(image)
    h, w = image.shape[:2]
    if not (0 <= top and 0 <= left and height >= 1 and width >= 1 and top + height <= h and left + width <= w):
        raise ValueError(f"crop (top={top}, left={left}, {height}x{width}) does not fit in a {h}x{w} image")
    return image[top:top + height, left:left + width].copy()


def scale_xy(image: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Resize each axis by its own factor (at least one pixel per side)."""
    _check_image(image)
    if not (scale_x > 0 and scale_y > 0):
        raise ValueError(f"scale factors must be positive, got ({scale_x}, {scale_y})")
    h, w = image.shape[:2]
    new_w, new_h = max(1, round(w * scale_x)), max(1, round(h * scale_y))
    if (new_h, new_w) == (h, w):
        return image
    flag = cv2.INTER_AREA if (new_w <= w and new_h <= h) else cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=flag)


def color_jitter(image: np.ndarray, brightness: float, contrast: float, saturation: float, hue: float) -> np.ndarray:
    """Scale brightness, contrast (about the mean grey) and saturation (about each pixel's grey),
    then rotate the hue by ``hue`` of a full turn. Factors of 1 and a hue of 0 change nothing."""
    _check_image(image)
    for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} factor must be a finite number >= 0, got {value!r}")
    if brightness == contrast == saturation == 1.0 and hue == 0.0:
        return image
    x = image.astype(np.float32)
    if brightness != 1.0:
        x *= brightness
    if contrast != 1.0:
        mean_grey = float((np.clip(x, 0, 255) @ _LUMA).mean())
        x = (x - mean_grey) * contrast + mean_grey
    if saturation != 1.0:
        grey = (np.clip(x, 0, 255) @ _LUMA)[..., None]
        x = (x - grey) * saturation + grey
    out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if hue != 0.0:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV_FULL)  # hue over the whole 0..255 range
        shift = int(round(hue * 256.0)) % 256
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 256).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
    return out


def hflip(image: np.ndarray) -> np.ndarray:
    """Mirror left-right."""
    _check_image(image)
    return np.ascontiguousarray(image[:, ::-1])


def rotated_size(height: int, width: int, angle: float) -> tuple[int, int]:
    """``(height, width)`` of the smallest canvas holding the whole image rotated by ``angle`` degrees."""
    rad = math.radians(angle)
    c, s = abs(math.cos(rad)), abs(math.sin(rad))
    # The tiny slack keeps exact right angles (cos = 6e-17) from growing a pixel.
    new_w = math.ceil(width * c + height * s - 1e-6)
    new_h = math.ceil(width * s + height * c - 1e-6)
    return max(1, new_h), max(1, new_w)


def rotate_expand(image: np.ndarray, angle: float, fill: str = "mean") -> np.ndarray:
    """Rotate counter-clockwise by ``angle`` degrees on a canvas large enough for every corner.

    The uncovered corners of the canvas are filled per ``fill`` (see :class:`AugmentConfig`).
    """
    _check_image(image)
    if not math.isfinite(angle):
        raise ValueError(f"angle must be finite, got {angle!r}")
    if fill not in FILL_MODES:
        raise ValueError(f"unknown fill {fill!r}; expected one of {FILL_MODES}")
    if angle % 360.0 == 0.0:
        return image
    h, w = image.shape[:2]
    new_h, new_w = rotated_size(h, w, angle)
    centre = ((w - 1) / 2.0, (h - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    matrix[0, 2] += (new_w - 1) / 2.0 - centre[0]
    matrix[1, 2] += (new_h - 1) / 2.0 - centre[1]
    if fill in _BORDER:
        border, value = _BORDER[fill], (0, 0, 0)
    elif fill == "mean":
        border, value = cv2.BORDER_CONSTANT, tuple(float(v) for v in image.reshape(-1, 3).mean(axis=0))
    else:
        border, value = cv2.BORDER_CONSTANT, (0, 0, 0)
    return cv2.warpAffine(image, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR,
                          borderMode=border, borderValue=value)


def apply_augment_params(image: np.ndarray, params: AugmentParams, fill: str = "mean") -> np.ndarray:
    """Apply one draw: crop, scale each axis, colour, flip, rotate (expanding the canvas)."""
    _check_image(image)
    if not isinstance(params, AugmentParams):
        raise TypeError(f"params must be AugmentParams, got {type(params).__name__}")
    out = image
    if params.crop is not None:
        out = crop(out, *params.crop)
    out = scale_xy(out, params.scale_x, params.scale_y)
    out = color_jitter(out, params.brightness, params.contrast, params.saturation, params.hue)
    if params.flip:
        out = hflip(out)
    return rotate_expand(out, params.angle, fill)


def augment(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One random augmentation of an RGB uint8 image; deterministic given ``rng``'s state."""
    _check_image(image)
    params = sample_augment_params(image.shape[0], image.shape[1], config, rng)
    return apply_augment_params(image, params, config.fill)


def cap_aspect_with_noise(image: np.ndarray, max_aspect: float, rng: np.random.Generator) -> np.ndarray:
    """Pad the short side with uniform random noise until ``long / short <= max_aspect``.

    Paper 004 (3.4.1) feeds stage-2 images at their true aspect ratio with a fixed short side,
    so a very elongated image would cost a very long feature map; "the aspect ratios are limited
    by introducing uniform random noise on the smaller side of images with high aspect ratios".
    We read this as: the short side is extended to ``ceil(long / max_aspect)`` pixels with
    i.i.d. uniform ``0..255`` noise, split between the two ends at a random offset. The artwork
    keeps its true proportions and every pixel of it; the noise carries no signal the network
    could learn from, and its random placement gives no position cue. Images already within
    the cap are returned unchanged (no draw from ``rng``).
    """
    _check_image(image)
    _check_rng(rng)
    checks.number(max_aspect, "max_aspect", low=1)
    h, w = image.shape[:2]
    long_side, short_side = max(h, w), min(h, w)
    if long_side <= max_aspect * short_side:
        return image
    target = math.ceil(long_side / max_aspect)
    pad = target - short_side
    before = int(rng.integers(0, pad + 1))
    axis = 0 if h < w else 1
    shape_before = (before, w, 3) if axis == 0 else (h, before, 3)
    shape_after = (pad - before, w, 3) if axis == 0 else (h, pad - before, 3)
    noise_before = rng.integers(0, 256, size=shape_before, dtype=np.uint8)
    noise_after = rng.integers(0, 256, size=shape_after, dtype=np.uint8)
    return np.concatenate([noise_before, image, noise_after], axis=axis)


def phone_view(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Another photo of the artwork in ``image``, for an artwork photographed once.

    Stage 3 learns from positive pairs, which one photo cannot give; two independent draws of
    this function can. A draw is what a visitor's phone makes of the photo (tilt, roll, zoom,
    lighting, blur, exposure, noise, JPEG: :func:`muselens.core.synthetic.phone.phone_view`), then
    :func:`augment` with ``config``, as stages 1 and 2 treat every photo. Deterministic given
    ``rng``'s state.
    """
    _check_image(image)
    _check_rng(rng)
    return augment(phone.phone_view(image, rng), config, rng)

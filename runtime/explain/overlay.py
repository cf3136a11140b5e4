"""Drawing a similarity map over its image (paper 001: bilinear upsampling, then blending).

Contributions can be negative (a cell that pulls two descriptors apart), so the colormap is
*diverging and symmetric around zero*: blue for negative, light grey for zero, red for
positive, with equal magnitudes getting equally strong colours on either side. The scale
``limit`` defaults to the largest ``|value|`` of the map, so the strongest cell is fully
saturated; pass the same ``limit`` to several overlays to compare them. Values beyond
``+-limit`` are clipped.

:func:`outline_overlay` draws what geometric verification found instead: the verified
artwork's outline and, if given, its inlier keypoints.

Images are RGB ``uint8`` ``(H, W, 3)`` as everywhere in muselens (JPEG encoding:
:func:`muselens.core.data.images.encode_jpeg`).
"""

from __future__ import annotations


import cv2
import numpy as np

from muselens.core import checks

# Anchors of the diverging map (close to matplotlib's "coolwarm" ends and middle), RGB.
NEGATIVE_RGB = (59, 76, 192)
ZERO_RGB = (221, 221, 221)
POSITIVE_RGB = (180, 4, 38)


def diverging_lut(levels: int = 255) -> np.ndarray:
    """``(levels, 3)`` uint8 RGB: ``NEGATIVE_RGB`` at -1, ``ZERO_RGB`` at 0, ``POSITIVE_RGB`` at +1."""
    levels = int(levels)
    if levels < 3 or levels % 2 == 0:
        raise ValueError(f"levels must be an odd int >= 3 (so 0 has its own level), got {levels}")
    t = np.linspace(-1.0, 1.0, levels)[:, None]
    neg, zero, pos = (np.asarray(c, dtype=np.float64) for c in (NEGATIVE_RGB, ZERO_RGB, POSITIVE_RGB))
    colours = np.where(t < 0, zero + (-t) * (neg - zero), zero + t * (pos - zero))
    return np.round(colours).astype(np.uint8)


_LUT = diverging_lut(255)


def upsample(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an ``(h, w)`` map to ``size = (H, W)``, float32.

    Half-pixel centres (OpenCV ``INTER_LINEAR``): cell ``(i, j)`` sits at image point
    ``((j + 0.5) W / w, (i + 0.5) H / h)``, the convention of :func:`~muselens.runtime.explain.roi.roi_mask`.
    """
    arr = checks.float_array(heat, "heat", 2).astype(np.float32)
    height, width = checks.size(size, "size")
    return cv2.resize(arr, (width, height), interpolation=cv2.INTER_LINEAR)


def colorize(heat: np.ndarray, limit: float | None = None) -> np.ndarray:
    """RGB uint8 ``(h, w, 3)`` of a map with the diverging colormap, symmetric around 0."""
    arr = checks.float_array(heat, "heat", 2).astype(np.float64)
    if limit is None:
        peak = float(np.max(np.abs(arr)))
        limit = peak if peak > 0.0 else 1.0  # an all-zero map is all "zero" colour
    else:
        limit = checks.number(limit, "limit", low=0, low_open=True)
    t = np.clip(arr / float(limit), -1.0, 1.0)
    index = np.rint((t + 1.0) * 0.5 * (_LUT.shape[0] - 1)).astype(np.intp)
    return _LUT[index]


def heatmap_overlay(image_rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5, *,
                    limit: float | None = None) -> np.ndarray:
    """Blend ``heat`` ``(h, w)``, upsampled to the image, over ``image_rgb`` ``(H, W, 3)`` uint8.

    ``out = (1 - alpha) * image + alpha * colour(heat / limit)``, RGB uint8 ``(H, W, 3)``;
    the colours are :func:`colorize`'s (blue < 0 < red, grey at 0).
    """
    image = checks.rgb_image(image_rgb, "image_rgb")
    a = checks.number(alpha, "alpha", low=0, high=1)
    colours = colorize(upsample(heat, image.shape[:2]), limit)
    blended = (1.0 - a) * image.astype(np.float32) + a * colours.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


OUTLINE_RGB = (40, 220, 90)


def outline_overlay(image_rgb: np.ndarray, outline: np.ndarray, points: np.ndarray | None = None, *,
                    colour: tuple[int, int, int] = OUTLINE_RGB, thickness: int | None = None) -> np.ndarray:
    """``image_rgb`` with a verified artwork's ``outline`` (4, 2) drawn, and its inlier ``points`` (n, 2),
    both in normalised image coordinates (as the service returns them); a copy, RGB uint8."""
    image = checks.rgb_image(image_rgb, "image_rgb").copy()
    quad = np.asarray(outline, dtype=np.float64)
    if quad.shape != (4, 2) or not np.isfinite(quad).all():
        raise ValueError(f"outline must be 4 finite (x, y) points, got shape {quad.shape}")
    h, w = image.shape[:2]
    scale = np.array([w, h], np.float64)
    width = thickness or max(2, round(min(h, w) / 120))
    cv2.polylines(image, [np.rint(quad * scale).astype(np.int32).reshape(-1, 1, 2)], True, colour, width, cv2.LINE_AA)
    if points is not None:
        for x, y in np.rint(np.asarray(points, np.float64).reshape(-1, 2) * scale).astype(int):
            cv2.circle(image, (int(x), int(y)), max(1, width - 1), colour, -1, cv2.LINE_AA)
    return image

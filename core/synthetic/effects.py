"""What happens to the light between the wall and the JPEG: glass, visitors, lamps, optics, sensor.

Each effect is a pure function of the picture and a generator; :func:`develop` applies them in
the order a phone would meet them. Pictures are float32 BGR in [0, 255] until the end. Smooth
fields (lighting, glare, masks) are computed at a fraction of the resolution and upsampled,
which keeps a 640-pixel photo to a few milliseconds.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import cv2
import numpy as np

from muselens.core.synthetic.camera import Conditions

_LOW = 8  # smooth fields are computed at 1/_LOW of the picture's resolution


def _low_shape(h: int, w: int) -> tuple[int, int]:
    return max(2, h // _LOW), max(2, w // _LOW)


def _up(field: np.ndarray, h: int, w: int) -> np.ndarray:
    return cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)


def _quad_mask(h: int, w: int, quad: np.ndarray) -> np.ndarray:
    """A soft-edged low-resolution mask of a picture-space quadrilateral, upsampled."""
    lh, lw = _low_shape(h, w)
    mask = np.zeros((lh, lw), np.float32)
    pts = np.round(quad * np.array([lw / w, lh / h])).astype(np.int32)
    cv2.fillConvexPoly(mask, pts, 1.0, cv2.LINE_AA)
    return _up(mask, h, w)


def glass(img: np.ndarray, quad: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Reflections on the glass over ``quad``: a ghost of the room, glare spots and streaks."""
    h, w = img.shape[:2]
    mask = _quad_mask(h, w, quad)
    lh, lw = _low_shape(h, w)
    # ghost: the room behind the photographer, mirrored and far out of focus
    ghost = cv2.resize(img, (lw, lh), interpolation=cv2.INTER_AREA)[:, ::-1]
    ghost = cv2.GaussianBlur(ghost, (0, 0), 1.5)
    if rng.random() < 0.5:  # the photographer's own dark reflection
        cx, cy = rng.uniform(0.3, 0.7) * lw, rng.uniform(0.3, 0.7) * lh
        cv2.ellipse(ghost, (int(cx), int(cy + lh * 0.35)), (int(lw * 0.22), int(lh * 0.3)), 0, 0, 360, (10, 10, 10), -1)
        cv2.circle(ghost, (int(cx), int(cy)), int(min(lw, lh) * 0.1), (10, 10, 10), -1)
    alpha = strength * rng.uniform(0.08, 0.3)
    out = img + alpha * mask[:, :, None] * _up(np.ascontiguousarray(ghost), h, w)
    # glare: one or two soft spots and maybe a streak, blended as light (screen)
    g = np.zeros((lh, lw), np.float32)
    for _ in range(int(rng.integers(1, 3))):
        c = (int(rng.uniform(0, lw)), int(rng.uniform(0, lh)))
        axes = (max(1, int(lw * rng.uniform(0.04, 0.2))), max(1, int(lh * rng.uniform(0.03, 0.15))))
        cv2.ellipse(g, c, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.5, 1.0)), -1)
    if rng.random() < 0.5:
        p1 = (int(rng.uniform(0, lw)), 0)
        p2 = (int(p1[0] + rng.uniform(-0.5, 0.5) * lw), lh)
        cv2.line(g, p1, p2, float(rng.uniform(0.3, 0.7)), max(1, int(lw * rng.uniform(0.01, 0.05))))
    g = cv2.GaussianBlur(g, (0, 0), max(0.8, lw * 0.02))
    glare = _up(g, h, w) * mask * min(1.0, strength)
    return 255 - (255 - out) * (1 - glare[:, :, None])


def visitors(img: np.ndarray, rng: np.random.Generator, count: int, size: tuple[float, float]) -> np.ndarray:
    """Paste ``count`` out-of-focus visitor silhouettes (head and shoulders) rising from the bottom."""
    h, w = img.shape[:2]
    lh, lw = max(2, h // 4), max(2, w // 4)
    out = img.copy()
    for _ in range(count):
        mask = np.zeros((lh, lw), np.float32)
        height = rng.uniform(*size) * lh
        cx = rng.uniform(-0.1, 1.1) * lw
        r = height * rng.uniform(0.14, 0.2)
        head_y = lh - height + r
        cv2.ellipse(mask, (int(cx), int(lh + height * 0.15)), (int(r * rng.uniform(2.0, 3.0)), int(height * 0.55)),
                    float(rng.uniform(-10, 10)), 0, 360, 1.0, -1, cv2.LINE_AA)
        cv2.ellipse(mask, (int(cx), int(head_y)), (int(r * 0.85), int(r)), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
        neck_bottom = lh - height * 0.3  # below the top of the shoulders
        cv2.rectangle(mask, (int(cx - r * 0.6), int(head_y)), (int(cx + r * 0.6), int(neck_bottom)), 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, lw * rng.uniform(0.004, 0.015)))
        cloth = rng.uniform(10, 160, 3).astype(np.float32) * (1 if rng.random() < 0.5 else 0.4)
        rows, cols = np.nonzero(mask > 1e-3)
        if len(rows) == 0:  # the visitor stands outside the picture
            continue
        # blend only the picture's rows and columns the silhouette touches
        y0, y1 = int(rows.min()) * h // lh, min(h, (int(rows.max()) + 2) * h // lh)
        x0, x1 = int(cols.min()) * w // lw, min(w, (int(cols.max()) + 2) * w // lw)
        m = _up(mask, h, w)[y0:y1, x0:x1, None]
        shade = np.linspace(1.2, 0.7, h, dtype=np.float32)[y0:y1, None, None]
        out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - m) + cloth * shade * m
    return out


def rope_barrier(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sagging rope across the lower part of the picture, close to the lens and blurred."""
    h, w = img.shape[:2]
    lh, lw = max(2, h // 4), max(2, w // 4)
    mask = np.zeros((lh, lw), np.float32)
    y0, y1 = rng.uniform(0.55, 0.95) * lh, rng.uniform(0.55, 0.95) * lh
    sag = rng.uniform(0.02, 0.12) * lh
    xs = np.linspace(0, lw, 24)
    ys = y0 + (y1 - y0) * xs / lw + sag * np.sin(np.pi * xs / lw)
    cv2.polylines(mask, [np.stack([xs, ys], 1).astype(np.int32)], False, 1.0, max(1, int(lh * 0.025)), cv2.LINE_AA)
    m = _up(cv2.GaussianBlur(mask, (0, 0), 0.8), h, w)[:, :, None]
    colour = np.array((30, 30, 120) if rng.random() < 0.5 else (40, 40, 40), np.float32)
    return img * (1 - m) + colour * m


def lighting(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Spotlights, a gradient across the wall, uneven paint and lens vignetting, as one gain field."""
    h, w = img.shape[:2]
    lh, lw = _low_shape(h, w)
    yy, xx = np.mgrid[0:lh, 0:lw].astype(np.float32)
    xx, yy = xx / lw, yy / lh
    gain = np.ones((lh, lw), np.float32)
    for _ in range(int(rng.integers(0, 3))):
        cx, cy, s = rng.uniform(-0.2, 1.2), rng.uniform(-0.3, 0.8), rng.uniform(0.15, 0.6)
        gain += rng.uniform(0.1, 0.6) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    theta = rng.uniform(0, 2 * math.pi)
    gain *= 1 + rng.uniform(0, 0.35) * ((xx - 0.5) * math.cos(theta) + (yy - 0.5) * math.sin(theta))
    gain *= 1 - rng.uniform(0.0, 0.45) * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2  # vignetting
    gain /= float(gain.mean())
    return img * _up(gain, h, w)[:, :, None]


def blur(img: np.ndarray, rng: np.random.Generator, radius: float) -> np.ndarray:
    """Defocus (a disc) or hand shake (a line) of about ``radius`` pixels."""
    if radius < 0.5:
        return img
    if rng.random() < 0.5:
        r = max(1, int(round(radius)))
        k = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
        cv2.circle(k, (r, r), r, 1.0, -1, cv2.LINE_AA)
    else:
        length = max(2, int(round(2 * radius)))
        k = np.zeros((length + 1, length + 1), np.float32)
        a = rng.uniform(0, math.pi)
        c, half = length / 2, length / 2
        cv2.line(k, (int(round(c - half * math.cos(a))), int(round(c - half * math.sin(a)))),
                 (int(round(c + half * math.cos(a))), int(round(c + half * math.sin(a)))), 1.0, 1, cv2.LINE_AA)
    return cv2.filter2D(img, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)


# Standard normal quantiles at 256 evenly spaced probabilities: random bytes looked up here give
# noise with a Gaussian histogram several times faster than Generator.standard_normal.
_GAUSS_TABLE = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)
_GAUSS_TABLE /= _GAUSS_TABLE.std()


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Approximately standard-normal float32 noise (256 levels), drawn fast from ``rng``."""
    return _GAUSS_TABLE[rng.integers(0, 256, shape, dtype=np.uint8)]


def sensor(img: np.ndarray, rng: np.random.Generator, cond: Conditions) -> np.ndarray:
    """Exposure, white balance, tone curve and noise: the phone's camera pipeline, simplified."""
    h, w = img.shape[:2]
    gain = 2 ** rng.uniform(*cond.exposure)
    wb = np.exp(rng.normal(0, cond.cast, 3))
    scale = gain * wb / float(np.exp(np.log(wb).mean()))
    linear = img * scale.astype(np.float32)
    levels = np.clip(linear, 0, 255).astype(np.uint8)
    gamma = rng.uniform(0.8, 1.25)
    tone = np.round(255 * (np.arange(256) / 255) ** gamma).astype(np.uint8)
    out = cv2.LUT(levels, tone).astype(np.float32)
    # read noise plus shot noise that grows with the signal; chroma noise is coarser
    sigma = rng.uniform(0.5, cond.noise_max)
    spread = (sigma * (0.4 + np.sqrt(np.arange(256) / 255))).astype(np.float32)
    luma = gaussian_noise(rng, (h, w))
    ch, cw = max(1, h // 2), max(1, w // 2)
    chroma = _up(gaussian_noise(rng, (ch, cw, 3)), h, w) * 0.6
    grey = cv2.cvtColor(levels, cv2.COLOR_BGR2GRAY)
    return out + (luma[:, :, None] + chroma) * spread[grey][:, :, None]


def develop(img: np.ndarray, rng: np.random.Generator, cond: Conditions, *, quad: np.ndarray | None,
            glass_strength: float, occluders: int, occluder_size: tuple[float, float]) -> np.ndarray:
    """All effects, in order, from the rendered wall to the picture (uint8 BGR, before JPEG)."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    if quad is not None and glass_strength > 0:
        out = glass(out, quad, rng, glass_strength)
    if occluders:
        out = visitors(out, rng, occluders, occluder_size)
    if rng.random() < 0.1:
        out = rope_barrier(out, rng)
    out = lighting(out, rng)
    if rng.random() < cond.p_blur:
        out = blur(out, rng, rng.uniform(0.5, cond.blur_max) * max(h, w) / 640)
    out = sensor(out, rng, cond)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)

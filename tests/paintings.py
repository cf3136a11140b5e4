"""Painted test artworks and photos of them in perspective, for local features and verification."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def painting(seed: int, h: int = 360, w: int = 480) -> np.ndarray:
    """Random ellipses, lines and text: texture with corners, as a painting has."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), rng.integers(0, 255, 3), np.uint8)
    for _ in range(60):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(5, 60)), int(rng.integers(5, 60)))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        cv2.line(img, (int(rng.integers(0, w)), int(rng.integers(0, h))),
                 (int(rng.integers(0, w)), int(rng.integers(0, h))), colour, int(rng.integers(1, 4)))
    return img


def photographed(art: np.ndarray, seed: int, frame=(720, 960)) -> tuple[np.ndarray, np.ndarray]:
    """``art`` seen in perspective, a third of a cluttered frame; returns the frame and its true outline."""
    h, w = art.shape[:2]
    fh, fw = frame
    clutter = cv2.resize(painting(seed + 1000, 90, 120), (fw, fh), interpolation=cv2.INTER_NEAREST)
    target = np.float32([[300, 200], [640, 240], [620, 520], [320, 500]])
    H = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), target)
    warped = cv2.warpPerspective(art, H, (fw, fh))
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), H, (fw, fh)) > 0
    out = clutter.copy()
    out[mask] = warped[mask]
    return out, target


def write_painting(path: Path, seed: int, h: int = 360, w: int = 480) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(painting(seed, h, w), cv2.COLOR_RGB2BGR))
    return path

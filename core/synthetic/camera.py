"""Where the visitor stands and what the lens sees: a pinhole camera looking at the wall.

The camera is placed at a tilt of up to ``max_tilt`` degrees from the wall's normal, turned
about its axis (in-plane rotation), and framed so that the aimed-at region fills the picture:
the whole work with wall around it (a global view), or a part of it (a detail view). The wall
plane is mapped to the picture by one homography; only the wall region the picture sees is
rasterised, at the resolution the picture needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from muselens.core.synthetic.scenes import Rect, Scene, render_region

# Aspect ratios (width / height) of the output photos: phones held either way, wide crops.
ASPECTS = (4 / 3, 3 / 4, 16 / 9, 9 / 16, 1.0, 3 / 2, 2 / 3)

# The most pixels one rendered wall region may hold; wider views are rendered coarser.
_MAX_REGION_PIXELS = 2_500_000


@dataclass(frozen=True)
class Conditions:
    """How hard the photos of one split are: references are shot with more care than queries."""

    max_tilt: float  # degrees between the optical axis and the wall's normal
    roll_sigma: float  # degrees of in-plane rotation (standard deviation)
    global_fraction: float  # share of views that show the whole work
    min_coverage: float  # smallest share of the work a detail view shows
    p_occluder: float
    p_blur: float
    blur_max: float  # pixels at 640 px, scaled with the output size
    noise_max: float  # standard deviation of sensor noise, in 8-bit levels
    exposure: tuple[float, float]  # stops
    cast: float  # spread of white-balance gains
    jpeg: tuple[int, int]  # quality range


REFERENCE = Conditions(max_tilt=30, roll_sigma=4, global_fraction=0.5, min_coverage=0.3, p_occluder=0.2,
                       p_blur=0.35, blur_max=4, noise_max=6, exposure=(-0.7, 0.5), cast=0.08, jpeg=(70, 95))
QUERY = Conditions(max_tilt=40, roll_sigma=8, global_fraction=0.4, min_coverage=0.3, p_occluder=0.35,
                   p_blur=0.6, blur_max=7, noise_max=12, exposure=(-1.3, 0.8), cast=0.14, jpeg=(60, 92))


def output_shape(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(width, height) of a photo whose long side is ``size``."""
    aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
    if aspect >= 1:
        return size, max(1, round(size / aspect))
    return max(1, round(size * aspect)), size


def pick_target(scene: Scene, rng: np.random.Generator, global_view: bool, aspect: float, min_coverage: float) -> Rect:
    """The wall region a photo aims at: the framed work with some wall, or a part of the work."""
    if scene.artwork is None or scene.frame is None:
        raise ValueError("pick_target needs a scene with an artwork")
    if global_view:
        fx0, fy0, fx1, fy1 = scene.frame
        mx, my = (fx1 - fx0) * rng.uniform(0.0, 0.15), (fy1 - fy0) * rng.uniform(0.0, 0.15)
        return (fx0 - mx, fy0 - my, fx1 + mx, fy1 + my)
    ax0, ay0, ax1, ay1 = scene.artwork
    aw, ah = ax1 - ax0, ay1 - ay0
    coverage = rng.uniform(min_coverage, 0.9)
    # a sub-rectangle of the work of that area, shaped roughly like the photo, inside the work
    ratio = aspect * rng.uniform(0.8, 1.25)
    w = math.sqrt(coverage * aw * ah * ratio)
    h = coverage * aw * ah / w
    if w > aw:
        w, h = aw, coverage * ah
    if h > ah:
        h, w = ah, coverage * aw
    x0 = ax0 + rng.uniform(0, aw - w)
    y0 = ay0 + rng.uniform(0, ah - h)
    return (x0, y0, x0 + w, y0 + h)


def look_at(target: Rect, out_w: int, out_h: int, *, tilt: float, azimuth: float, roll: float, hfov: float,
            fill: float, offset: tuple[float, float], cover: bool) -> np.ndarray:
    """Homography from wall units to picture pixels for a camera aimed at ``target``.

    ``tilt``, ``azimuth``, ``roll`` and ``hfov`` (across the picture's long side) are in
    degrees. The target's projection is scaled to fill ``fill`` of the picture (fitting inside
    it, or covering it if ``cover``) and its centre moved by ``offset`` (fractions of the free
    room left around it). Should a corner of the picture then graze the wall, the tilt is
    reduced until none does.
    """
    for _ in range(30):
        H = _look_at_once(target, out_w, out_h, tilt=tilt, azimuth=azimuth, roll=roll, hfov=hfov, fill=fill,
                          offset=offset, cover=cover)
        if not grazing(H, out_w, out_h):
            return H
        tilt *= 0.85  # a corner looks along the wall: step towards the wall's normal
    raise ValueError(f"no view of {target} at fill {fill} avoids grazing the wall")


def _look_at_once(target: Rect, out_w: int, out_h: int, *, tilt: float, azimuth: float, roll: float, hfov: float,
                  fill: float, offset: tuple[float, float], cover: bool) -> np.ndarray:
    if not 0 <= tilt < 80:
        raise ValueError(f"tilt must be in [0, 80) degrees, got {tilt}")
    if not 10 <= hfov <= 120:
        raise ValueError(f"hfov must be in [10, 120] degrees, got {hfov}")
    x0, y0, x1, y1 = target
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty target {target}")
    t, a, r = math.radians(tilt), math.radians(azimuth), math.radians(roll)
    f = (max(out_w, out_h) / 2) / math.tan(math.radians(hfov) / 2)
    size = math.hypot(x1 - x0, y1 - y0)
    d = f * size / (fill * math.hypot(out_w, out_h))
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.0])
    away = np.array([math.sin(t) * math.cos(a), math.sin(t) * math.sin(a), -math.cos(t)])
    cam = centre + d * away
    z = -away
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    xr, yr = math.cos(r) * x + math.sin(r) * y, -math.sin(r) * x + math.cos(r) * y
    R = np.stack([xr, yr, z])
    K = np.array([[f, 0, out_w / 2], [0, f, out_h / 2], [0, 0, 1]])
    H = K @ np.column_stack([R[:, 0], R[:, 1], -R @ cam])
    # frame the shot: a similarity in the picture (a zoom and a shift of the principal point)
    pts = project(H, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64))
    bx0, by0 = pts.min(0)
    bx1, by1 = pts.max(0)
    bw, bh = bx1 - bx0, by1 - by0
    s = fill * (math.sqrt(out_w * out_h / (bw * bh)) if cover else min(out_w / bw, out_h / bh))
    room_x, room_y = max(0.0, out_w - s * bw) / 2, max(0.0, out_h - s * bh) / 2
    if cover:
        room_x, room_y = 0.05 * out_w, 0.05 * out_h
    tx = out_w / 2 + offset[0] * room_x - s * (bx0 + bx1) / 2
    ty = out_h / 2 + offset[1] * room_y - s * (by0 + by1) / 2
    S = np.array([[s, 0, tx], [0, s, ty], [0, 0, 1]])
    H = S @ H
    return H / H[2, 2]


def project(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a homography to (n, 2) points."""
    p = np.column_stack([pts, np.ones(len(pts))]) @ H.T
    return p[:, :2] / p[:, 2:3]


def grazing(H: np.ndarray, out_w: int, out_h: int, ratio: float = 0.1) -> bool:
    """Whether a picture corner sees past the horizon or the wall far more obliquely than its centre.

    Such corners would need a huge stretch of wall for a few pixels; visitors do not shoot so.
    """
    Hinv = np.linalg.inv(H)
    pts = np.array([[out_w / 2, out_h / 2], [0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float64)
    hom = np.column_stack([pts, np.ones(5)]) @ Hinv.T
    if np.any(hom[:, 2] * hom[0, 2] <= 0):
        return True
    wall = hom[:, :2] / hom[:, 2:3]
    centre = _magnification(H, wall[0])
    return any(_magnification(H, p) < ratio * centre for p in wall[1:])


def shoot(scene: Scene, H: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """The picture of ``scene`` through homography ``H`` (wall -> pixels), geometry only."""
    Hinv = np.linalg.inv(H)
    corners = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float64)
    hom = np.column_stack([corners, np.ones(4)]) @ Hinv.T
    if np.any(hom[:, 2] <= 0):
        raise ValueError("the picture sees past the wall's horizon; reduce the tilt or the field of view")
    seen = hom[:, :2] / hom[:, 2:3]
    bx0, by0, bx1, by1 = scene.bounds
    rx0, ry0 = max(seen[:, 0].min(), bx0), max(seen[:, 1].min(), by0)
    rx1, ry1 = min(seen[:, 0].max(), bx1), min(seen[:, 1].max(), by1)
    if rx1 <= rx0 or ry1 <= ry0:  # looking entirely outside the scene: wall everywhere
        rx0, ry0, rx1, ry1 = bx0, by0, bx1, by1
    # pixels per wall unit at the picture's centre, with some room for the nearer side
    centre = np.array([out_w / 2, out_h / 2, 1.0]) @ Hinv.T
    scale = min(1.0, 1.25 * _magnification(H, centre[:2] / centre[2]))
    scale = min(scale, math.sqrt(_MAX_REGION_PIXELS / ((rx1 - rx0) * (ry1 - ry0))))
    region = render_region(scene, (rx0, ry0, rx1, ry1), scale)
    to_region = np.array([[scale, 0, -rx0 * scale], [0, scale, -ry0 * scale], [0, 0, 1]])
    M = H @ np.linalg.inv(to_region)
    return cv2.warpPerspective(region, M, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _magnification(H: np.ndarray, p: np.ndarray) -> float:
    """Picture pixels per wall unit at wall point ``p`` (square root of the Jacobian's determinant)."""
    x, y = p
    den = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    u = (H[0, 0] * x + H[0, 1] * y + H[0, 2]) / den
    v = (H[1, 0] * x + H[1, 1] * y + H[1, 2]) / den
    J = np.array([[H[0, 0] - u * H[2, 0], H[0, 1] - u * H[2, 1]],
                  [H[1, 0] - v * H[2, 0], H[1, 1] - v * H[2, 1]]]) / den
    return math.sqrt(abs(np.linalg.det(J)))


def sample_view(rng: np.random.Generator, cond: Conditions) -> dict[str, float]:
    """Tilt, azimuth, roll and field of view of one handheld shot."""
    tilt = cond.max_tilt * math.sqrt(rng.uniform(0, 1))  # more oblique shots than a uniform tilt gives
    return {
        "tilt": float(tilt),
        "azimuth": float(rng.uniform(0, 360)),
        "roll": float(np.clip(rng.normal(0, cond.roll_sigma), -3 * cond.roll_sigma, 3 * cond.roll_sigma)),
        "hfov": float(rng.uniform(40, 65)),
    }

"""A walk's frame as the phone's camera takes it: the lit wall through the homography, then motion
blur, vignetting, auto-exposure with lag and drift, white balance, tone curve and sensor noise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from muselens.core.synthetic import seeding
from muselens.core.synthetic.camera import _magnification, project
from muselens.core.synthetic.effects import gaussian_noise
from muselens.core.synthetic.gallery_wall import Wall
from muselens.core.synthetic.scenes import Scene, render_region
from muselens.core.synthetic.walk_camera import Smooth


def visible_region(H: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    corners = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float64)
    return project(np.linalg.inv(H), corners)


def render_view(wall: Wall, H: np.ndarray, out_w: int, out_h: int, vignette: np.ndarray) -> np.ndarray:
    """The lit wall through homography ``H`` (wall -> picture), float32 BGR, before the sensor.

    ``vignette`` is the lens's gain at 1/8 of the picture's resolution; it is folded into the
    wall's light so that one multiplication applies both.
    """
    seen = visible_region(H, out_w, out_h)
    bx0, by0, bx1, by1 = wall.scene.bounds
    rx0, ry0 = max(seen[:, 0].min(), bx0), max(seen[:, 1].min(), by0)
    rx1, ry1 = min(seen[:, 0].max(), bx1), min(seen[:, 1].max(), by1)
    if rx1 <= rx0 or ry1 <= ry0:
        raise ValueError("the camera looks past the wall's bounds")
    centre = project(np.linalg.inv(H), np.array([[out_w / 2, out_h / 2]], np.float64))[0]
    scale = min(1.0, 1.3 * _magnification(H, centre))
    # only the layers the region touches: a long wall holds hundreds
    layers = [ly for ly in wall.scene.layers if ly.rect[2] > rx0 and ly.rect[0] < rx1]
    scene = Scene(wall.scene.wall, wall.scene.floor, wall.scene.floor_y, wall.scene.bounds, layers)
    region = render_region(scene, (rx0, ry0, rx1, ry1), scale)
    to_region = np.array([[scale, 0, -rx0 * scale], [0, scale, -ry0 * scale], [0, 0, 1]])
    img = cv2.warpPerspective(region, H @ np.linalg.inv(to_region), (out_w, out_h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    # the light falls on the wall: evaluate it where each coarse picture pixel lands on the wall
    lh, lw = vignette.shape
    gx, gy = np.meshgrid((np.arange(lw) + 0.5) * out_w / lw, (np.arange(lh) + 0.5) * out_h / lh)
    pts = project(np.linalg.inv(H), np.column_stack([gx.ravel(), gy.ravel()]))
    gain = wall.light.gain(pts[:, 0], pts[:, 1]).reshape(lh, lw).astype(np.float32) * vignette
    gain = cv2.resize(gain, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return cv2.multiply(img.astype(np.float32), cv2.merge([gain, gain, gain]))


def motion_blur(img: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Smear ``img`` along ``shift`` (pixels moved while the shutter was open)."""
    length = float(np.hypot(*shift))
    if length < 1.0:
        return img
    r = int(math.ceil(length / 2))
    k = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    dx, dy = shift / 2
    cv2.line(k, (round(r * 16 - dx * 16), round(r * 16 - dy * 16)), (round(r * 16 + dx * 16), round(r * 16 + dy * 16)),
             1.0, 1, cv2.LINE_AA, shift=4)
    return cv2.filter2D(img, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)


_LUMA = np.array([0.114, 0.587, 0.299], np.float32)


@dataclass
class Exposure:
    """Auto-exposure with a lag and a slow drift, white balance, tone curve and noise: fixed per walk."""

    drift: Smooth
    wb: np.ndarray
    gamma: float
    noise: float
    vignette: np.ndarray  # lens gain at 1/8 resolution, applied with the wall's light
    stops: float | None = None

    def develop(self, img: np.ndarray, t: float, dt: float, rng: np.random.Generator) -> np.ndarray:
        """The camera's picture (uint8 BGR) of the light ``img``; updates the auto-exposure."""
        h, w = img.shape[:2]
        small = cv2.resize(img, (max(2, w // 16), max(2, h // 16)), interpolation=cv2.INTER_AREA)
        luma = float((small @ _LUMA).mean())
        wanted = float(np.clip(math.log2(115.0 / max(luma, 1.0)), -1.5, 1.5))
        if self.stops is None:
            self.stops = wanted
        else:  # the camera catches up over about half a second
            self.stops += (wanted - self.stops) * (1 - math.exp(-dt / 0.5))
        stops = self.stops + 0.2 * self.drift(t)
        gain = (2**stops) * self.wb
        levels = cv2.convertScaleAbs(cv2.multiply(img, (float(gain[0]), float(gain[1]), float(gain[2]), 0.0)))
        tone = np.round(255 * (np.arange(256) / 255) ** self.gamma).astype(np.uint8)
        out = cv2.LUT(levels, tone).astype(np.float32)
        # read noise plus shot noise growing with the signal (and with the gain); chroma noise is coarser
        sigma = self.noise * 2 ** (0.5 * max(0.0, stops))
        spread = (sigma * (0.4 + np.sqrt(np.arange(256) / 255))).astype(np.float32)
        amp = spread[cv2.cvtColor(levels, cv2.COLOR_BGR2GRAY)]
        chroma = cv2.resize(gaussian_noise(rng, (max(1, h // 2), max(1, w // 2), 3)), (w, h),
                            interpolation=cv2.INTER_LINEAR)
        luma_noise = gaussian_noise(rng, (h, w)) * amp
        amp *= 0.6
        noise = cv2.add(cv2.multiply(chroma, cv2.merge([amp, amp, amp])), cv2.merge([luma_noise] * 3))
        out = cv2.add(out, noise)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def make_exposure(seed: int, out_w: int, out_h: int) -> Exposure:
    rng = seeding.rng_for(seed, seeding.WALK, seeding.WALK_CAMERA, 1)
    wb = np.exp(rng.normal(0, 0.05, 3))
    wb /= float(np.exp(np.log(wb).mean()))
    lw, lh = max(2, out_w // 8), max(2, out_h // 8)
    yy, xx = np.mgrid[0:lh, 0:lw].astype(np.float32)
    r2 = ((xx + 0.5) / lw - 0.5) ** 2 + ((yy + 0.5) / lh - 0.5) ** 2
    vignette = (1 - float(rng.uniform(0.2, 0.5)) * r2 * 2).astype(np.float32)
    return Exposure(Smooth(rng, 0.05, 0.3), wb.astype(np.float32), float(rng.uniform(0.9, 1.1)),
                    float(rng.uniform(2.0, 4.5)), vignette)

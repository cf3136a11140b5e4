"""A catalogue photo as a visitor's phone would see it: tilted, cropped or framed by wall, relit,
blurred, noisy and JPEG-compressed.

A museum often has one clean photo per artwork and none of its visitors' photos. Two uses need
what a phone makes of that photo: training (a second view of the same artwork is a positive
pair) and the "no artwork" threshold (a phone view of artwork A scored against every *other*
artwork is what a photo of an artwork the museum does not hold scores). The effects are the
synthetic museum's own (:mod:`muselens.core.synthetic.effects`), applied to a real
photo instead of a rendered wall; every draw comes from the caller's generator, so a view is a
function of its seed.
"""

from __future__ import annotations

import cv2
import numpy as np

from muselens.core.data.images import encode_jpeg
from muselens.core.synthetic.camera import QUERY
from muselens.core.synthetic.effects import blur, lighting, sensor

MAX_CORNER_SHIFT = 0.12  # of the side: about 25-35 degrees of tilt seen on a flat painting
MAX_ROLL_DEGREES = 8.0
ZOOM = (0.75, 1.25)  # < 1: a detail of the work fills the frame; > 1: wall around it
JPEG_QUALITY = (60, 92)


def _check(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"a phone view needs an RGB uint8 (H, W, 3) image, got {got} "
                         f"{getattr(image, 'shape', '')}")
    if min(image.shape[:2]) < 8:
        raise ValueError(f"a phone view needs an image of at least 8 x 8 pixels, got {image.shape[:2]}")


def _homography(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Picture -> view: the corners moved toward a tilt, turned by a roll, zoomed in or out."""
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(-MAX_CORNER_SHIFT, MAX_CORNER_SHIFT, (4, 2)) * np.float32([w, h])
    moved = corners + jitter.astype(np.float32)
    centre = np.float32([w / 2, h / 2])
    angle = np.deg2rad(rng.uniform(-MAX_ROLL_DEGREES, MAX_ROLL_DEGREES))
    rot = np.float32([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    zoom = rng.uniform(*ZOOM)
    # zoom > 1 shrinks the work inside the frame (wall around it), < 1 enlarges it (a detail)
    moved = (moved - centre) @ rot.T / zoom + centre
    return cv2.getPerspectiveTransform(corners, moved.astype(np.float32))


def phone_view(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One phone-like view of the RGB uint8 ``image``, same size, RGB uint8.

    Outside the photo the view shows a plain wall of the photo's border colour, as a visitor's
    photo of a hung painting shows the wall around it.
    """
    _check(image)
    h, w = image.shape[:2]
    border = np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]), axis=0)
    wall = tuple(float(c) for c in np.clip(border * rng.uniform(0.7, 1.1), 0, 255))
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    view = cv2.warpPerspective(bgr, _homography(h, w, rng), (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=wall[::-1])
    out = lighting(view.astype(np.float32), rng)
    if rng.random() < QUERY.p_blur:
        out = blur(out, rng, rng.uniform(0.5, QUERY.blur_max) * max(h, w) / 640)
    out = sensor(out, rng, QUERY)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    data = encode_jpeg(out, quality, order="BGR")
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

"""A walk frame's ground truth, from the same geometry as its pixels: per artwork the share of it in
the picture, the one in view (covering the central third enough), and whether a passer-by hides it."""

from __future__ import annotations

import cv2
import numpy as np

from muselens.core.synthetic.camera import project
from muselens.core.synthetic.gallery_wall import Wall
from muselens.core.synthetic.passers_by import quarter_size
from muselens.core.synthetic.walk_render import visible_region

MIN_CENTRE_COVERAGE = 0.25  # in_view is null below this share of the central third covered
MIN_HIDDEN_SHARE = 0.05  # a frame is occluded when a passer-by hides this much of an artwork's part in view


def frame_truth(wall: Wall, H: np.ndarray, out_w: int, out_h: int, hidden: np.ndarray | None) -> dict:
    """What the frame shows: per artwork the share of it seen, the one in view, and occlusion.

    ``hidden`` is the quarter-resolution mask of passers-by (True where one stands).
    """
    qw, qh = quarter_size(out_w, out_h)
    seen = visible_region(H, out_w, out_h)
    sx0, sx1 = seen[:, 0].min(), seen[:, 0].max()
    picture = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float32)
    c0, c1 = qw // 3, qw - qw // 3
    r0, r1 = qh // 3, qh - qh // 3
    centre_area = (c1 - c0) * (r1 - r0)
    visible, coverage, occluded = [], {}, False
    for art in wall.artworks:
        x0, y0, x1, y1 = art.rect
        if x1 < sx0 or x0 > sx1:
            continue
        quad = project(H, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)).astype(np.float32)
        area = float(cv2.contourArea(quad))
        inside, _ = cv2.intersectConvexConvex(quad, picture)
        if area <= 0 or inside <= 0:
            continue
        in_frame = min(1.0, float(inside) / area)
        mask = np.zeros((qh, qw), np.uint8)
        cv2.fillConvexPoly(mask, np.round(quad * np.array([qw / out_w, qh / out_h], np.float32) * 16).astype(np.int32),
                           1, cv2.LINE_8, shift=4)
        pixels = int(mask.sum())
        hidden_share = 0.0
        if pixels and hidden is not None:
            hidden_share = float((mask.astype(bool) & hidden).sum()) / pixels
        occluded |= hidden_share >= MIN_HIDDEN_SHARE
        coverage[art.id] = float(mask[r0:r1, c0:c1].sum()) / centre_area
        fraction = in_frame * (1 - hidden_share)
        if fraction >= 0.005:
            visible.append({"id": art.id, "fraction": round(fraction, 4)})
    best = max(coverage, key=coverage.__getitem__) if coverage else None
    in_view = best if best is not None and coverage[best] >= MIN_CENTRE_COVERAGE else None
    return {
        "in_view": in_view,
        "centre_coverage": round(coverage[best], 4) if best is not None else 0.0,
        "visible": visible,
        "occluded": bool(occluded),
    }

"""Regional search: the artwork that fills a fifth of the frame, found by describing parts of it.

The frame's descriptor sums the ``k`` cells of the network's feature map that activate most
(paper 004). When the artwork takes a corner of a cluttered frame, most of those cells lie on
other things, and the descriptor ranks the artwork nowhere near the top. The same map describes
any part of the frame for free: a region's descriptor is the sum of its own most active cells,
as many as its share of the frame (what the network would give the region cropped, up to the
receptive field), L2-normalised. The regions are R-MAC's (Tolias et al.): squares at
``scales`` sizes, the largest the map's short side, overlapping by about 40 %.

Only regions that hold the frame's centre count: the artwork a visitor points the camera at,
as verification's fits must hold it too. The artworks these regions rank first, that the whole
frame's ranking left out, become candidates for geometric verification; a candidate that fits
has its evidence start from the better of its whole-frame and its best regional score (the fit
says which part of the frame shows it), one that does not keeps its whole-frame score. An
unverified answer is still the whole frame's, so the threshold and the "no artwork" decision
are unchanged.

Measured on 2 cores (ORB verification, 3 regional candidates, against none), rules tried in turn:

* mcv-paintings' 128 queries shrunk to a fifth of a 1280x720 frame among four other paintings,
  near its centre: shown top-1 44 -> 69, verified right 39 -> 64, verified wrong 8 -> 12;
* grocery-packaged (781 shelf photos): shown top-1 715 -> 712, verified right 532 -> 532, wrong
  28 -> 32; the demo's walk: 185 -> 198 of the 225 frames with an artwork verified right, wrong
  7 -> 11 of 250; mcv-paintings and ukbench-250 as they come (the artwork fills the photo): unchanged;
* regions anywhere in the frame cost grocery-packaged 6 right answers (neighbouring products) and
  gained less on the small paintings (54 right, 11 wrong); the regional score given to every
  candidate, fitted or not, let an unfitted candidate outweigh a 210-inlier fit of the tiny test
  model's enrolled artwork.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from muselens.core import checks

DEFAULT_SCALES = 3
REGION_OVERLAP = 0.4
DEFAULT_REGIONAL_CANDIDATES = 3
MIN_REGION_CELLS = 2  # a region of fewer cells on its short side describes too little to rank


def rmac_regions(height: int, width: int, scales: int = DEFAULT_SCALES) -> list[tuple[int, int, int, int]]:
    """R-MAC regions of an ``height`` x ``width`` cell map: ``(top, left, size, size)`` squares,
    at scale ``l`` of side ``2 * min(h, w) / (l + 1)`` (the whole short side at ``l = 1``), spread
    evenly along each axis so that neighbours overlap by about :data:`REGION_OVERLAP`."""
    checks.positive_int(height, "height")
    checks.positive_int(width, "width")
    checks.positive_int(scales, "scales")
    out: list[tuple[int, int, int, int]] = []
    short = min(height, width)
    for level in range(1, scales + 1):
        side = max(1, math.floor(2 * short / (level + 1)))
        if side < MIN_REGION_CELLS and out:
            break

        def starts(extent: int) -> list[int]:
            if extent <= side:
                return [0]
            steps = math.ceil((extent - side) / (side * (1 - REGION_OVERLAP)))
            return sorted({round(i * (extent - side) / steps) for i in range(steps + 1)})

        out += [(top, left, side, side) for top in starts(height) for left in starts(width)]
    return list(dict.fromkeys(out))


def holding_centre(regions: Sequence[tuple[int, int, int, int]], height: int,
                   width: int) -> list[tuple[int, int, int, int]]:
    """The ``regions`` whose cells hold the centre of an ``height`` x ``width`` map (all of them
    where none does)."""
    cy, cx = (height - 1) / 2, (width - 1) / 2
    held = [r for r in regions if r[0] <= cy <= r[0] + r[2] - 1 and r[1] <= cx <= r[1] + r[3] - 1]
    return held or list(regions)


def regional_descriptors(descriptor_map: np.ndarray, activation: np.ndarray, k: int,
                         regions: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """``(R, D)`` unit descriptors of ``regions`` from the graph's ``descriptor_map`` ``(D, h, w)``
    and ``activation`` ``(h, w)``: per region, the sum of its ``max(1, k * share)`` most active
    cells' vectors (``share``: the region's part of the map), L2-normalised."""
    dmap = np.asarray(descriptor_map, dtype=np.float32)
    act = np.asarray(activation, dtype=np.float32)
    if dmap.ndim != 3 or act.shape != dmap.shape[1:]:
        raise ValueError(f"descriptor_map (D, h, w) and activation (h, w) must agree, got {dmap.shape} and {act.shape}")
    d, h, w = dmap.shape
    out = np.zeros((len(regions), d), np.float32)
    for i, (top, left, rh, rw) in enumerate(regions):
        cells = act[top:top + rh, left:left + rw].ravel()
        picked = max(1, min(cells.size, round(k * cells.size / (h * w))))
        best = np.argpartition(-cells, picked - 1)[:picked]
        rows, cols = np.unravel_index(best, (rh, rw))
        vector = dmap[:, top + rows, left + cols].sum(axis=1)
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            out[i] = vector / norm
    return out


def best_regional_scores(vectors: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
    """Per artwork (row of the instance-averaged ``vectors``), its best score over the regions."""
    if descriptors.shape[0] == 0:
        return np.full(len(vectors), -np.inf, np.float32)
    return (descriptors @ np.asarray(vectors, dtype=np.float32).T).max(axis=0)


def regional_candidates(best: np.ndarray, ids: Sequence[str], exclude: Sequence[str],
                        n: int = DEFAULT_REGIONAL_CANDIDATES) -> tuple[str, ...]:
    """The ``n`` artworks (named by ``ids``) of the best regional scores ``best``, leaving out
    ``exclude`` (already candidates): best first."""
    if n <= 0 or len(ids) == 0:
        return ()
    skip = set(exclude)
    order = np.argsort(-best, kind="stable")
    return tuple(ids[i] for i in order if ids[i] not in skip)[:n]

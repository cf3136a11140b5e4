"""Region-specific re-ranking (paper 001, section 4.6): rank candidates by a part of the query.

A similarity map sums to the score, so the sum of its cells inside a region of interest is
how much that region contributes to each match; sorting candidates by it retrieves the
artworks that match *this part* of the frame.

Region of interest: ``(x0, y0, x1, y1)`` in normalised image coordinates (``0`` left/top,
``1`` right/bottom), ``x0 < x1``, ``y0 < y1``. A feature cell ``(i, j)`` of an ``h x w`` map
belongs when its centre ``((j + 0.5) / w, (i + 0.5) / h)`` lies in the half-open box
``[x0, x1) x [y0, y1)``, so adjacent boxes never share a cell. This treats the cells as an
even grid over the image -- the same convention as :func:`~muselens.runtime.explain.overlay.upsample`
-- which is off by less than a stride where the input size is not a multiple of it.

Which map is summed for our region descriptor: the *full* per-location map by default.
The region map is zero outside the k regions the query's activation picked, so a box that
misses them would give every candidate 0 and rank nothing; the selection does not know about
the user's box. The full map credits every cell in the box with ``<m_l, r>`` over the query's
fixed normaliser, i.e. what the cell would contribute as a region, and when the box holds
exactly the k regions the ROI score is the whole score. ``which="region"`` sums the region
map instead (only selected cells count). For average and max pooling both maps are equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from muselens.core import checks
from muselens.runtime.explain.decompose import cell_vectors_of
from muselens.runtime.explain.maps import PooledMap, RegionMaps

WHICH = ("full", "region")


def roi_mask(roi: tuple[float, float, float, float], shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``(h, w)`` mask of the feature cells whose centres lie in ``roi`` (at least one)."""
    h, w = checks.size(shape, "shape")
    if not isinstance(roi, (tuple, list, np.ndarray)) or len(roi) != 4:
        raise ValueError(f"roi must be (x0, y0, x1, y1), got {roi!r}")
    x0, y0, x1, y1 = (checks.number(v, f"roi {n}", low=0, high=1) for v, n in zip(roi, ("x0", "y0", "x1", "y1")))
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"roi must be non-empty (x0 < x1 and y0 < y1), got {tuple(roi)!r}")
    cx = (np.arange(w) + 0.5) / w
    cy = (np.arange(h) + 0.5) / h
    mask = ((cy >= y0) & (cy < y1))[:, None] & ((cx >= x0) & (cx < x1))[None, :]
    if not mask.any():
        raise ValueError(f"roi {tuple(roi)!r} contains no feature-cell centre of the {h}x{w} map "
                         f"(centres sit at (j + 0.5) / {w}, (i + 0.5) / {h}); enlarge it")
    return mask


@dataclass(frozen=True, eq=False)
class RoiRanking:
    """Candidates ranked by the query's similarity inside a region of interest.

    ``order`` ``(n,)``: candidate indices, best first (ties keep candidate order).
    ``scores`` ``(n,)`` float64: the ROI score of ``candidates[order[i]]`` (descending).
    ``mask`` ``(h, w)``: the feature cells summed.
    """

    order: np.ndarray
    scores: np.ndarray
    mask: np.ndarray


def rerank_by_roi(
    query: RegionMaps | PooledMap,
    candidates: np.ndarray,
    roi: tuple[float, float, float, float],
    *,
    which: Literal["full", "region"] = "full",
) -> RoiRanking:
    """Rank ``candidates`` ``(n, D)`` by the sum of the query's similarity map inside ``roi``.

    Computed as one matrix product: the map is linear in the candidate vector, so the ROI
    score is ``<sum of the query's cell vectors in the ROI, candidate>``.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    cells = cell_vectors_of(query)
    gallery = checks.rows(candidates, "candidates", cells.dim, of="the map")
    mask = roi_mask(roi, cells.shape)
    if which == "region":
        selected = np.zeros(mask.size, dtype=bool)
        selected[cells.locations] = True
        mask_used = mask & selected.reshape(mask.shape)
    else:
        mask_used = mask
    inside = cells.vectors[:, mask_used].sum(axis=1)
    roi_scores = gallery @ inside
    order = np.argsort(-roi_scores, kind="stable").astype(np.int64)
    return RoiRanking(order=order, scores=roi_scores[order], mask=mask)

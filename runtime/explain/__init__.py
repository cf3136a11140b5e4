"""Torch-free similarity heatmaps (paper 001) for muselens descriptors: numpy, plus OpenCV to draw.

A similarity ``<descriptor, r>`` is split over the explained image's feature cells so that the
cells sum to the score exactly (up to float rounding):

* :mod:`maps` -- what an image provides: :class:`RegionMaps` (our region descriptor, from the
  exported graph's ``descriptor_map`` and ``locations``) or :class:`PooledMap` (average or
  max pooling of a plain feature map, paper 001 eq. 3 and 5-6);
* :mod:`decompose` -- pairwise maps, :func:`explain_query` / :func:`explain_reference`;
* :mod:`class_map` -- class similarity maps (paper 001, 4.5);
* :mod:`roi` -- region-of-interest re-ranking (paper 001, 4.6);
* :mod:`overlay` -- upsampling, a diverging colormap, blending; a verified artwork's outline.
"""

from __future__ import annotations

from muselens.runtime.explain.class_map import class_similarity
from muselens.runtime.explain.decompose import SIDES, Explanation, decompose, explain_query, explain_reference
from muselens.runtime.explain.maps import POOLINGS, CellVectors, PooledMap, RegionMaps
from muselens.runtime.explain.overlay import colorize, diverging_lut, heatmap_overlay, outline_overlay, upsample
from muselens.runtime.explain.roi import RoiRanking, rerank_by_roi, roi_mask

__all__ = [
    "POOLINGS",
    "SIDES",
    "CellVectors",
    "Explanation",
    "PooledMap",
    "RegionMaps",
    "RoiRanking",
    "class_similarity",
    "colorize",
    "decompose",
    "diverging_lut",
    "explain_query",
    "explain_reference",
    "heatmap_overlay",
    "outline_overlay",
    "rerank_by_roi",
    "roi_mask",
    "upsample",
]

"""Heatmaps for a recognition: why the frame matched the artwork (paper 001 on our descriptor).

The decomposed score is the one reported: the frame's descriptor against the artwork's
instance-averaged gallery vector. On the query side the frame's own ``descriptor_map`` and
``locations`` (already computed by the same inference) give the k regions' contributions
(cells sum to the score) and every location's; the class map sums the frame's maps against
every reference photo of the artwork (4.5). On the reference side the best-matching reference
photo is run through the model once (then cached) and explained against the frame's
descriptor. Region-specific retrieval (4.6) ranks artworks by how much a region of interest
of the frame contributes to their similarity.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from muselens.core import checks
from muselens.runtime.engine import Cancellation, Describer
from muselens.core.data.images import encode_jpeg
from muselens.runtime.explain import (RegionMaps, class_similarity, explain_query, explain_reference, heatmap_overlay,
                                      rerank_by_roi, roi_mask)
from muselens.runtime.frames import decode_encoded
from muselens.runtime.recognition.options import HeatmapKind, HeatmapSide, OptionsError, RecognizeOptions
from muselens.runtime.recognition.search import GallerySearch

OVERLAY_JPEG_QUALITY = 85
ROI_CANDIDATES = 200  # re-rank the best artworks by whole-frame score; enough for any museum
# Reference photos (pixels and maps) kept for explanations, in bytes: an entry is 1-1.7 MB at
# 448 px depending on the photo's shape, so a count would leave the memory it takes to the mix
# of photos asked about (64 of them: 64-110 MB). 96 MiB holds 56-100 photos.
REFERENCE_CACHE_BYTES = 96 * 1024 * 1024
ENROLLED_JPEG_QUALITY = 95  # enrolled photos kept for explanations


@dataclass(frozen=True, eq=False)
class HeatmapResult:
    kind: HeatmapKind
    side: HeatmapSide
    instance_id: str
    score: float
    values: np.ndarray  # (h, w) float32 over the explained image's feature grid
    region_cells: np.ndarray  # (k,) flat row-major
    region_contributions: np.ndarray  # (k,)
    overlay_jpeg: bytes | None = None


@dataclass(frozen=True)
class RoiMatches:
    instance_ids: tuple[str, ...]
    roi_scores: tuple[float, ...]  # the ROI's contribution, which ranks them
    scores: tuple[float, ...]  # the whole-frame similarity of the same artworks


ReferenceImages = Callable[[int], "np.ndarray | None"]


def _no_references(row: int) -> None:
    return None


def _entry_bytes(entry: tuple[np.ndarray, RegionMaps]) -> int:
    image, maps = entry
    arrays = (image, maps.descriptor_map, maps.locations, maps.descriptor)
    return sum(a.nbytes for a in arrays if a is not None)


class Explainer:
    """Heatmaps and ROI re-ranking for one served model (thread-safe; caches reference maps)."""

    def __init__(self, describer: Describer, reference_image: ReferenceImages = _no_references,
                 extra: Mapping[int, bytes] | None = None,
                 cache: OrderedDict[int, tuple[np.ndarray, RegionMaps]] | None = None,
                 cache_bytes: int = REFERENCE_CACHE_BYTES):
        checks.integer(cache_bytes, "cache_bytes", low=0)
        self.describer = describer
        self._reference_image = reference_image
        # gallery row -> an enrolled photo, resized and JPEG-encoded: a server that enrols photos
        # all day keeps ~0.1 MB of each, not ~1 MB of pixels (the bundle's own photos stay on disk)
        self._extra = dict(extra or {})
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[int, tuple[np.ndarray, RegionMaps]] = OrderedDict()
        self._cached = 0  # bytes held by _cache
        self._lock = threading.Lock()
        for row, entry in (cache or {}).items():
            self._keep(row, entry)

    def with_references(self, first_row: int, resized: Sequence[np.ndarray]) -> Explainer:
        """A copy that also knows the photos enrolled as gallery rows ``first_row`` onwards.

        Enrolment only appends rows, so the cached maps stay valid and go along: an enrolment
        neither throws away the cached maps nor makes the next explanations compute them again.
        """
        extra = dict(self._extra)
        extra.update({first_row + i: encode_jpeg(image, ENROLLED_JPEG_QUALITY) for i, image in enumerate(resized)})
        with self._lock:
            cache = OrderedDict(self._cache)
        return Explainer(self.describer, self._reference_image, extra, cache, self.cache_bytes)

    @property
    def cached_bytes(self) -> int:
        """Bytes of reference pixels and maps held now (at most ``cache_bytes``)."""
        return self._cached

    @property
    def enrolled_bytes(self) -> int:
        """Bytes of the enrolled photos kept (JPEG) for explanations against them."""
        return sum(len(photo) for photo in self._extra.values())

    def _keep(self, row: int, entry: tuple[np.ndarray, RegionMaps]) -> None:
        """Cache ``entry`` as the newest, then drop the oldest until within ``cache_bytes``
        (caller holds the lock, or nobody else has the explainer yet)."""
        old = self._cache.pop(row, None)
        if old is not None:
            self._cached -= _entry_bytes(old)
        self._cache[row] = entry
        self._cached += _entry_bytes(entry)
        while self._cached > self.cache_bytes and self._cache:
            _, dropped = self._cache.popitem(last=False)
            self._cached -= _entry_bytes(dropped)

    def reference(self, row: int, cancel: Cancellation | None = None) -> tuple[np.ndarray, RegionMaps] | None:
        """The resized reference photo of gallery ``row`` and its maps, or None if not in the bundle."""
        with self._lock:
            if row in self._cache:
                self._cache.move_to_end(row)
                return self._cache[row]
        enrolled = self._extra.get(row)
        if enrolled is not None:
            image = decode_encoded(enrolled)
        else:
            original = self._reference_image(row)
            if original is None:
                return None
            image = self.describer.resize(original)
        outputs = self.describer.run(image, ["descriptor", "descriptor_map", "locations"], cancel)
        entry = (image, RegionMaps.from_outputs({k: v[0] for k, v in outputs.items()}))
        with self._lock:
            self._keep(row, entry)
        return entry

    def explain(self, query: Mapping[str, np.ndarray], resized: np.ndarray, instance_id: str,
                options: RecognizeOptions, search: GallerySearch,
                cancel: Cancellation | None = None) -> tuple[HeatmapResult, ...]:
        maps = RegionMaps.from_outputs(query)
        target = search.vector(instance_id)
        out: list[HeatmapResult] = []
        pairwise = None
        for kind in options.heatmap_kinds:
            if kind is HeatmapKind.CLASS:
                references = search.gallery.descriptors[search.references(instance_id)]
                explanation = class_similarity(maps, references)
                values = explanation.full_map
            else:
                pairwise = pairwise or explain_query(maps, target)
                explanation = pairwise
                values = explanation.region_map if kind is HeatmapKind.REGIONS else explanation.full_map
            out.append(self._result(kind, HeatmapSide.QUERY, instance_id, explanation, values, resized, options))
        if options.explain_reference:
            row, _ = search.best_reference(np.asarray(query["descriptor"], np.float32), instance_id)
            reference = self.reference(row, cancel)
            if reference is None:
                raise OptionsError("no_reference_images", "explain_reference needs the reference photos, and this "
                                   "bundle has none for this artwork (export with reference images)",
                                   status="FAILED_PRECONDITION")
            image, ref_maps = reference
            explanation = explain_reference(ref_maps, np.asarray(query["descriptor"], np.float64))
            for kind in options.heatmap_kinds:
                if kind is HeatmapKind.CLASS:
                    continue  # a class map explains the frame against many photos; no single reference side
                values = explanation.region_map if kind is HeatmapKind.REGIONS else explanation.full_map
                out.append(self._result(kind, HeatmapSide.REFERENCE, instance_id, explanation, values, image,
                                        options))
        return tuple(out)

    @staticmethod
    def _result(kind: HeatmapKind, side: HeatmapSide, instance_id: str, explanation, values: np.ndarray,
                image: np.ndarray, options: RecognizeOptions) -> HeatmapResult:
        overlay = encode_jpeg(heatmap_overlay(image, values), OVERLAY_JPEG_QUALITY) if options.overlay else None
        return HeatmapResult(kind, side, instance_id, float(explanation.score), values.astype(np.float32),
                             explanation.locations.astype(np.int64),
                             explanation.region_contributions.astype(np.float32), overlay)

    def rerank_roi(self, query: Mapping[str, np.ndarray], roi: tuple[float, float, float, float], top_k: int,
                   search: GallerySearch) -> RoiMatches:
        """The artworks whose similarity the ROI contributes most to (paper 001, 4.6)."""
        maps = RegionMaps.from_outputs(query)
        try:  # a valid rectangle can still be too small for this frame's feature grid: the client's error
            roi_mask(roi, maps.descriptor_map.shape[1:])
        except ValueError as exc:
            raise OptionsError("bad_roi", f"region_of_interest: {exc}") from exc
        descriptor = np.asarray(query["descriptor"], np.float32)
        hits = search.search(descriptor, min(ROI_CANDIDATES, len(search)))
        ranking = rerank_by_roi(maps, search.vectors[hits.rows], roi, which="full")
        order = ranking.order[:top_k]
        return RoiMatches(tuple(hits.instance_ids[i] for i in order),
                          tuple(float(s) for s in ranking.scores[:top_k]),
                          tuple(float(hits.scores[i]) for i in order))

"""How much a geometric fit weighs against the descriptor, measured on the museum's own queries.

The runtime answers the candidate of most evidence, descriptor score plus
``weight * ln(1 + inliers)`` for a candidate whose reference fits the frame
(:mod:`muselens.runtime.verification.shortlist`). The right weight depends on the museum: a
descriptor trained on real photos of it should decide between two packages of one brand that
both fit (grocery-packaged: a small weight), while a weak descriptor ranks "hub" artworks first
and a fit must outweigh it (the synthetic demo: a large one). So each query of the museum is
verified once, as the service would (its descriptor's shortlist plus the keypoints' vote, every
candidate fitted), and the weight of :data:`~muselens.runtime.verification.shortlist.EVIDENCE_WEIGHTS`
that answers most queries right is kept; ties go to the default (0.03), then to the smaller.
A museum with fewer than :data:`MIN_QUERIES` queries keeps the default: a handful of photos would
only measure noise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from muselens.runtime.recognition.search import GallerySearch
from muselens.runtime.recognition.served_model import verify_shortlist
from muselens.runtime.verification import DEFAULT_SHORTLIST, ShortlistVerifier
from muselens.runtime.verification.shortlist import EVIDENCE_WEIGHTS, INLIER_WEIGHT, evidence

MIN_QUERIES = 20


@dataclass(frozen=True)
class QueryFits:
    """One query: its artwork, the candidates' descriptor scores and, for those that fit, inliers."""

    truth: str
    scores: dict[str, float]
    inliers: dict[str, int]

    def answer(self, weight: float) -> str:
        return max(self.scores, key=lambda iid: (evidence(self.scores[iid], self.inliers.get(iid, 0), weight),
                                                 iid in self.inliers))


def query_fits(verifier: ShortlistVerifier, search: GallerySearch, images: Sequence[np.ndarray],
               descriptors: np.ndarray, truths: Sequence[str]) -> list[QueryFits]:
    """Every query's candidates (shortlist and vote) with their scores and fits, fitted as served."""
    def fits(index: int) -> QueryFits:
        descriptor = descriptors[index]
        hits = search.search(descriptor, DEFAULT_SHORTLIST)
        report = verify_shortlist(verifier, search, images[index], hits.instance_ids, descriptor)
        ids = [*hits.instance_ids, *report.voted]
        scores = {iid: float(search.vector(iid) @ descriptor) for iid in ids}
        return QueryFits(str(truths[index]), scores, dict(report.inliers_by_artwork))

    # a query per core: OpenCV's detection and fits and faiss's search release the GIL
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="muselens-fits") as pool:
        return list(pool.map(fits, range(len(truths))))


def choose_weight(fits: Sequence[QueryFits]) -> dict[str, Any]:
    """The weight that answers most queries right (the manifest's ``verification`` record)."""
    if len(fits) < MIN_QUERIES:
        return {"evidence_weight": INLIER_WEIGHT, "queries": len(fits),
                "how": f"default: fewer than {MIN_QUERIES} queries to measure it on"}
    right = {w: sum(f.answer(w) == f.truth for f in fits) / len(fits) for w in EVIDENCE_WEIGHTS}
    best = max(right.values())
    chosen = min((w for w, r in right.items() if r == best), key=lambda w: (w != INLIER_WEIGHT, w))
    return {"evidence_weight": chosen, "queries": len(fits), "how": "the most queries answered right",
            "mp_at_1_by_weight": {f"{w:g}": round(r, 6) for w, r in right.items()}}


def calibrate_evidence_weight(verifier: ShortlistVerifier, search: GallerySearch, images: Sequence[np.ndarray],
                              descriptors: np.ndarray, truths: Sequence[str],
                              progress: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Verify every query once, then choose the weight (see the module docstring)."""
    if len(truths) < MIN_QUERIES:
        return {**choose_weight([]), "queries": len(truths)}
    progress(f"verifying {len(truths)} queries to weigh a fit against the descriptor")
    return choose_weight(query_fits(verifier, search, images, descriptors, truths))

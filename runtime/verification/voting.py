"""Candidates from local features alone, for when the global descriptor's shortlist misses.

A global descriptor of a frame where the artwork is small, or seen at a slant, can rank it
far down; verification of the global top 5 then never sees it. Here every reference's local
descriptors sit in one approximate nearest-neighbour index (FAISS HNSW: binary for ORB, float for
RootSIFT). Each keypoint of the frame votes for the reference of its nearest neighbour when that
neighbour passes Lowe's ratio test against the second; the artworks with the most votes join
the shortlist that verification fits. Votes are only a shortlist: nothing is answered from
them without a homography.

The index is built when a model loads (about 2 s for 80,000 ORB descriptors on one core, 9 s for
250,000) and rebuilt with an enrolment; a search is some 10-20 ms for a frame's 1,000 keypoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from muselens.runtime.verification.features import FeatureConfig, LocalFeatures
from muselens.runtime.verification.store import LocalFeatureStore

HNSW_NEIGHBOURS = 16
HNSW_EF_SEARCH = 32
RATIO = 0.8  # Lowe's ratio on the two nearest neighbours' distances
MIN_VOTES = 4  # an artwork with fewer votes is not worth a fit
DEFAULT_VOTED = 3  # artworks added to the shortlist


class LocalVoter:
    """An index over every reference's local descriptors, voting for artworks."""

    def __init__(self, store: LocalFeatureStore, features: FeatureConfig, row_ids: Sequence[str]):
        import faiss

        if len(store) != len(row_ids):
            raise ValueError(f"{len(store)} references' local features for {len(row_ids)} gallery rows")
        self.binary = features.kind == "orb"
        self.row_ids = np.asarray(row_ids, dtype=str)
        # the reference row of every stored descriptor
        self.owner = np.repeat(np.arange(len(store)), np.diff(store.offsets)).astype(np.int64)
        if self.binary:
            self.index = faiss.IndexBinaryHNSW(store.width * 8, HNSW_NEIGHBOURS)
            self.index.add(np.ascontiguousarray(store.descriptors))
        else:
            self.index = faiss.IndexHNSWFlat(store.width, HNSW_NEIGHBOURS)
            self.index.add(np.ascontiguousarray(store.descriptors, dtype=np.float32))
        self.index.hnsw.efSearch = HNSW_EF_SEARCH

    def __len__(self) -> int:
        return int(self.owner.size)

    def row_votes(self, frame: LocalFeatures) -> np.ndarray:
        """Votes per reference (gallery row): keypoints of the frame whose nearest reference descriptor
        is clearly nearer than the second, and belongs to that reference."""
        counts = np.zeros(len(self.row_ids), np.int64)
        if len(frame) < 2 or len(self) < 2:
            return counts
        query = frame.descriptors if self.binary else frame.descriptors.astype(np.float32)
        distances, neighbours = self.index.search(np.ascontiguousarray(query), 2)
        d1, d2 = distances[:, 0].astype(np.float64), distances[:, 1].astype(np.float64)
        if not self.binary:  # faiss returns squared L2 distances
            d1, d2 = np.sqrt(np.maximum(d1, 0)), np.sqrt(np.maximum(d2, 0))
        good = (neighbours[:, 0] >= 0) & (neighbours[:, 1] >= 0) & (d1 < RATIO * d2)
        np.add.at(counts, self.owner[neighbours[good, 0]], 1)
        return counts

    def votes(self, frame: LocalFeatures) -> dict[str, int]:
        """Votes per artwork (its references' votes summed)."""
        return artwork_votes(self.row_ids, self.row_votes(frame))


def artwork_votes(row_ids: np.ndarray, row_votes: np.ndarray) -> dict[str, int]:
    names, inverse = np.unique(row_ids, return_inverse=True)
    totals = np.bincount(inverse, weights=row_votes, minlength=names.size)
    return {str(n): int(t) for n, t in zip(names, totals) if t > 0}


def top_voted(votes: dict[str, int], exclude: Sequence[str] = (), count: int = DEFAULT_VOTED) -> list[str]:
    """The ``count`` artworks with most votes (at least :data:`MIN_VOTES`), leaving out ``exclude``."""
    skip = set(exclude)
    ranked = sorted(((n, iid) for iid, n in votes.items() if iid not in skip and n >= MIN_VOTES),
                    key=lambda t: (-t[0], t[1]))
    return [iid for _, iid in ranked[:count]]

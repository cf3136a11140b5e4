"""Candidates from local features alone, for when the global descriptor's shortlist misses.

A global descriptor of a frame where the artwork is small, or seen at a slant, can rank it
far down; verification of the global top 5 then never sees it. Here every reference's local
descriptors sit in one approximate nearest-neighbour index (FAISS HNSW: binary for ORB, float for
RootSIFT). Each keypoint of the frame votes for the reference of its nearest neighbour when that
neighbour passes Lowe's ratio test against the second; the artworks with the most votes join
the shortlist that verification fits. Votes are only a shortlist: nothing is answered from
them without a homography.

Building the index is the slow part: about 2 s for 80,000 ORB descriptors on one core, 9 s for
250,000, 27.5 s for a million on two cores, and minutes at a CLICIDE-sized museum's 2.8 million.
So an export of a large museum keeps the built index in the bundle (:meth:`LocalVoter.to_bytes`,
faiss's own serialisation, about 180 bytes a descriptor), and loading it takes a fraction of a
second. An enrolment adds its photos' descriptors to a copy of the index instead of rebuilding it.
A search is some 10-16 ms for a frame's 1,000 keypoints on one core (efSearch 16).
Beside a stream a search takes one core (``threads=1``), as the verification around it holds
one of the inference gate's cores: on two it ran on the core the gate left to the stream's
inferences. (On the noisy 2-core host of stop 29 the stream's FPS did not settle it: one camera
at 448 answered 14-17 FPS either way in alternated runs.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from muselens.core import checks
from muselens.runtime.verification.features import FeatureConfig, LocalFeatures
from muselens.runtime.verification.store import LocalFeatureStore

HNSW_NEIGHBOURS = 16
# The search's depth. Over each real set's query photos (probes/verification/vote_search_depth.py,
# one thread), the query's artwork was among the three most voted as often at 16 as at 32
# (grocery-packaged 73.0 % of 400, ukbench-250 80.0 % of 300; mcv-paintings' top three the same),
# 128 added at most a point, and 16 took 0.55-0.58x of 32's time (10.2 against 18.4 ms, 15.9
# against 27.5, 13.0 against 23.4).
HNSW_EF_SEARCH = 16
RATIO = 0.8  # Lowe's ratio on the two nearest neighbours' distances
MIN_VOTES = 4  # an artwork with fewer votes is not worth a fit
DEFAULT_VOTED = 3  # artworks added to the shortlist


class LocalVoter:
    """An index over every reference's local descriptors, voting for artworks."""

    def __init__(self, store: LocalFeatureStore, features: FeatureConfig, row_ids: Sequence[str], *,
                 index_bytes: bytes | np.ndarray | None = None):
        """Index every descriptor of ``store`` (one block per gallery row, ``row_ids`` their artworks),
        or load ``index_bytes``, an index of exactly those descriptors kept by :meth:`to_bytes`
        (ValueError, naming the problem, when it is not one)."""
        self.binary = features.kind == "orb"
        self._set_rows(store, row_ids)
        if index_bytes is None:
            self.index = self._new_index(store.width)
            self._add(store.descriptors)
        else:
            self.index = self._loaded_index(index_bytes, store.width, len(store.descriptors))
        self.index.hnsw.efSearch = HNSW_EF_SEARCH

    def _set_rows(self, store: LocalFeatureStore, row_ids: Sequence[str]) -> None:
        """The artwork of every gallery row, and the row that owns every stored descriptor."""
        if len(store) != len(row_ids):
            raise ValueError(f"{len(store)} references' local features for {len(row_ids)} gallery rows")
        self.row_ids = np.asarray(row_ids, dtype=str)
        self.owner = np.repeat(np.arange(len(store)), np.diff(store.offsets)).astype(np.int64)

    def _new_index(self, width: int):
        import faiss

        if self.binary:
            return faiss.IndexBinaryHNSW(width * 8, HNSW_NEIGHBOURS)
        return faiss.IndexHNSWFlat(width, HNSW_NEIGHBOURS)

    def _add(self, descriptors: np.ndarray) -> None:
        if len(descriptors):
            self.index.add(np.ascontiguousarray(descriptors if self.binary else descriptors.astype(np.float32)))

    def _loaded_index(self, data: bytes | np.ndarray, width: int, count: int):
        """``data`` parsed, checked to be an index of ``count`` descriptors ``width`` bytes wide."""
        import faiss

        array = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 1:
            raise ValueError(f"a vote index is bytes or a 1-D uint8 array, got {type(data).__name__}")
        try:  # faiss checks what it reads: a malformed file raises RuntimeError
            index = (faiss.deserialize_index_binary if self.binary else faiss.deserialize_index)(array)
        except RuntimeError as exc:
            raise ValueError(f"not a readable faiss index ({str(exc).splitlines()[-1][:200]})") from None
        expected = faiss.IndexBinaryHNSW if self.binary else faiss.IndexHNSWFlat
        if not isinstance(index, expected):
            raise ValueError(f"a {type(index).__name__}, not the {expected.__name__} that "
                             f"{'ORB' if self.binary else 'float'} features are voted with")
        dim = width * 8 if self.binary else width
        if index.d != dim or index.ntotal != count:
            raise ValueError(f"indexes {index.ntotal} descriptors of dimension {index.d}, but the references "
                             f"have {count} of dimension {dim}")
        return index

    def to_bytes(self) -> bytes:
        """The built index in faiss's serialisation (what ``index_bytes`` loads)."""
        import faiss

        serialize = faiss.serialize_index_binary if self.binary else faiss.serialize_index
        return serialize(self.index).tobytes()

    def extended(self, store: LocalFeatureStore, row_ids: Sequence[str]) -> LocalVoter:
        """A new voter for ``store``, this voter's store with rows appended (an enrolment): a copy of
        the index with the new descriptors added, not a rebuild. This voter is left as it was (calls
        in flight keep using it)."""
        if len(store) < len(self.row_ids) or len(store.descriptors) < len(self):
            raise ValueError(f"the extended store has {len(store)} rows and {len(store.descriptors)} descriptors, "
                             f"fewer than this voter's {len(self.row_ids)} and {len(self)}")
        new = object.__new__(LocalVoter)
        new.binary = self.binary
        new._set_rows(store, row_ids)
        new.index = new._loaded_index(np.frombuffer(self.to_bytes(), np.uint8), store.width, len(self))
        new._add(store.descriptors[len(self):])
        new.index.hnsw.efSearch = HNSW_EF_SEARCH
        return new

    def __len__(self) -> int:
        return int(self.owner.size)

    @property
    def nbytes(self) -> int:
        """Bytes the index holds: its descriptors, the graph's links and levels, and the owner table."""
        import faiss

        if self.binary:
            storage = faiss.downcast_IndexBinary(self.index.storage).xb.size()
        else:
            storage = faiss.downcast_index(self.index.storage).codes.size()
        graph = self.index.hnsw
        return int(storage + 4 * graph.neighbors.size() + 4 * graph.levels.size() + 8 * graph.offsets.size()
                   + self.owner.nbytes + self.row_ids.nbytes)

    def row_votes(self, frame: LocalFeatures, threads: int | None = None) -> np.ndarray:
        """Votes per reference (gallery row): keypoints of the frame whose nearest reference descriptor
        is clearly nearer than the second, and belongs to that reference. ``threads``: the search's
        OpenMP threads (None: OpenMP's default, every core)."""
        counts = np.zeros(len(self.row_ids), np.int64)
        if len(frame) < 2 or len(self) < 2:
            return counts
        query = frame.descriptors if self.binary else frame.descriptors.astype(np.float32)
        with omp_threads(threads):
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


@contextmanager
def omp_threads(threads: int | None) -> Iterator[None]:
    """faiss's OpenMP threads for the ``with`` body, in the calling thread only (OpenMP's thread
    count is a per-thread setting: other threads' searches keep theirs); None leaves it alone."""
    if threads is None:
        yield
        return
    import faiss

    checks.positive_int(threads, "OpenMP threads")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


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

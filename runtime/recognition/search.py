"""Gallery search: the artworks nearest a descriptor, exactly, or with FAISS when the gallery is large.

Scores are dot products of L2-normalised descriptors against the *instance-averaged* gallery
(one vector per artwork), the representation the bundle's threshold was calibrated on. A
museum has hundreds to a few thousand artworks: one matrix product (``exact``) answers in
microseconds and is the default. For very large galleries (a chain of museums, a city)
``faiss-hnsw`` answers in sub-linear time at a small recall cost; ``faiss-flat`` is FAISS's
exact inner-product index. ``auto`` takes ``exact`` below :data:`FAISS_MIN_ARTWORKS` artworks
and ``faiss-hnsw`` above it when faiss is installed; the engine chosen is always reported
(:attr:`GallerySearch.engine`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from muselens.core import checks
from muselens.runtime.bundle import Gallery

SEARCH_ENGINES = ("auto", "exact", "faiss-flat", "faiss-hnsw")
FAISS_MIN_ARTWORKS = 50_000
HNSW_NEIGHBOURS = 32
HNSW_EF_SEARCH = 128


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class SearchHits:
    """Best artworks first: ids, scores (dot products) and their rows in the averaged gallery."""

    instance_ids: tuple[str, ...]
    scores: np.ndarray
    rows: np.ndarray


class GallerySearch:
    """Nearest artworks of a query descriptor over a gallery's instance averages."""

    def __init__(self, gallery: Gallery, engine: str = "auto"):
        if engine not in SEARCH_ENGINES:
            raise ValueError(f"unknown search engine {engine!r}; expected one of {list(SEARCH_ENGINES)}")
        self.gallery = gallery
        self.vectors, ids = gallery.instance_average()
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        self.ids = tuple(str(i) for i in ids)
        self._row = {iid: row for row, iid in enumerate(self.ids)}
        if engine == "auto":
            engine = "faiss-hnsw" if len(self.ids) >= FAISS_MIN_ARTWORKS and faiss_available() else "exact"
        self.engine = engine
        self._index = self._build_index(engine) if engine != "exact" else None

    def _build_index(self, engine: str):
        try:
            import faiss
        except ImportError as exc:
            raise ValueError(f"search engine {engine!r} needs faiss (pip install faiss-cpu)") from exc
        dim = self.vectors.shape[1]
        if engine == "faiss-flat":
            index = faiss.IndexFlatIP(dim)
        else:
            index = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = HNSW_EF_SEARCH
        index.add(self.vectors)
        return index

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: np.ndarray, k: int) -> SearchHits:
        """The ``k`` best artworks (fewer if the gallery is smaller), ties kept in gallery order."""
        query = np.asarray(query, dtype=np.float32)
        if query.shape != (self.vectors.shape[1],):
            raise ValueError(f"query must be a ({self.vectors.shape[1]},) descriptor, got shape {query.shape}")
        k = min(checks.positive_int(k, "k"), len(self.ids))
        if self._index is not None:
            scores, rows = self._index.search(query[None], k)
            keep = rows[0] >= 0
            rows, scores = rows[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)
        else:
            all_scores = self.vectors @ query
            rows = np.argsort(-all_scores, kind="stable")[:k]
            scores = all_scores[rows]
        return SearchHits(tuple(self.ids[r] for r in rows), scores, rows)

    def scores(self, query: np.ndarray) -> np.ndarray:
        """The query's score against every artwork (exact, for re-ranking and tests)."""
        return self.vectors @ np.asarray(query, dtype=np.float32)

    def vector(self, instance_id: str) -> np.ndarray:
        """The instance-averaged descriptor of one artwork."""
        return self.vectors[self._row[instance_id]]

    def references(self, instance_id: str) -> np.ndarray:
        """Row indices (in the per-image gallery) of one artwork's reference images."""
        return np.flatnonzero(self.gallery.instance_ids == instance_id)

    def best_reference(self, query: np.ndarray, instance_id: str) -> tuple[int, float]:
        """The artwork's reference image most similar to the query: (gallery row, score)."""
        rows = self.references(instance_id)
        if rows.size == 0:
            raise KeyError(f"artwork {instance_id!r} is not in the gallery")
        scores = self.gallery.descriptors[rows] @ np.asarray(query, dtype=np.float32)
        best = int(np.argmax(scores))
        return int(rows[best]), float(scores[best])

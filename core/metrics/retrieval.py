"""Retrieval metrics: Precision@k, mP@1, AP, mAP (paper 004, 4.2) and Recall@K (002, 003).

All metrics read a *ranked relevance* matrix: row q lists, best first, whether each
gallery item has the query's label. Two ways to rank items with equal scores:

* ``"pessimistic"`` (default for evaluation): among equal scores, non-relevant items
  rank first. Every metric is then the minimum over all orderings of the ties, so a
  degenerate descriptor (e.g. all scores equal) cannot score well by gallery order luck.
* ``"stable"``: equal scores keep gallery order, exactly what :func:`ranking.rank`
  and the runtime do; use it to reproduce what the service would answer.

Every query must have at least one relevant gallery item (AP divides by their number):
otherwise a ValueError names the queries. Drop them first with :func:`queries_in_gallery`.
``k`` larger than the gallery means "the whole gallery": Recall@k looks at all items and
Precision@k still divides by ``k`` (eq. 4.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from muselens.core import checks

TieMode = Literal["pessimistic", "stable"]
TIE_MODES: tuple[str, ...] = ("pessimistic", "stable")


def relevance(query_labels: np.ndarray, gallery_labels: np.ndarray) -> np.ndarray:
    """Boolean ``(Q, G)`` matrix: gallery item g shares query q's label."""
    q = checks.labels(query_labels, "query_labels")
    g = checks.labels(gallery_labels, "gallery_labels")
    return q[:, None] == g[None, :]


def queries_in_gallery(query_labels: np.ndarray, gallery_labels: np.ndarray) -> np.ndarray:
    """Boolean ``(Q,)`` mask of queries whose label occurs in the gallery."""
    return relevance(query_labels, gallery_labels).any(axis=1)


def ranked_relevance(scores: np.ndarray, relevant: np.ndarray, ties: TieMode = "pessimistic") -> np.ndarray:
    """Reorder each row of ``relevant`` by decreasing score, equal scores as per ``ties``."""
    s = checks.float_array(scores, "scores", 2)
    rel = np.asarray(relevant)
    if rel.dtype != np.bool_ or rel.shape != s.shape:
        raise ValueError(f"relevant must be a boolean array of shape {s.shape}, got {rel.dtype} {rel.shape}")
    if ties == "pessimistic":
        order = np.lexsort((rel, -s), axis=1)  # last key is primary; False (0) before True
    elif ties == "stable":
        order = np.argsort(-s, axis=1, kind="stable")
    else:
        raise ValueError(f"ties must be one of {TIE_MODES}, got {ties!r}")
    return np.take_along_axis(rel, order, axis=1)


def _ranked(ranked: np.ndarray) -> np.ndarray:
    arr = np.asarray(ranked)
    if arr.ndim != 2 or arr.dtype != np.bool_:
        raise ValueError(f"ranked relevance must be a 2-D boolean array, got {arr.dtype} {arr.shape}")
    return arr


def precision_at_k(ranked: np.ndarray, k: int) -> np.ndarray:
    """Per-query Precision@k (eq. 4.3): relevant items among the first k, divided by k."""
    k = checks.positive_int(k, "k")
    return _ranked(ranked)[:, :k].sum(axis=1) / k


def recall_at_k(ranked: np.ndarray, k: int) -> np.ndarray:
    """Per-query Recall@K as in papers 002/003: 1.0 if any of the first k is relevant."""
    k = checks.positive_int(k, "k")
    return _ranked(ranked)[:, :k].any(axis=1).astype(np.float64)


def average_precision(ranked: np.ndarray) -> np.ndarray:
    """Per-query AP (eq. 4.6): sum over ranks k of P@k * rel(k), over the number relevant."""
    rel = _ranked(ranked)
    n_relevant = rel.sum(axis=1)
    if np.any(n_relevant == 0):
        bad = np.flatnonzero(n_relevant == 0)
        raise ValueError(f"{bad.size} queries have no relevant gallery item (first: {bad[:5].tolist()})")
    hits = np.cumsum(rel, axis=1)
    precision = hits / np.arange(1, rel.shape[1] + 1)
    return (precision * rel).sum(axis=1) / n_relevant


@dataclass(frozen=True, eq=False)
class RetrievalReport:
    """Per-query metric arrays (each ``(Q,)``) and their means."""

    ties: str
    n_gallery: int
    precision_at_1: np.ndarray
    average_precision: np.ndarray
    precision_at_k: dict[int, np.ndarray]
    recall_at_k: dict[int, np.ndarray]

    @property
    def n_queries(self) -> int:
        return int(self.precision_at_1.shape[0])

    @property
    def mp_at_1(self) -> float:
        return float(self.precision_at_1.mean())

    @property
    def map(self) -> float:
        return float(self.average_precision.mean())

    def to_dict(self, per_query: bool = False) -> dict[str, object]:
        """JSON-ready summary; with ``per_query`` also the per-query values as lists."""
        out: dict[str, object] = {
            "n_queries": self.n_queries,
            "n_gallery": self.n_gallery,
            "ties": self.ties,
            "mp_at_1": self.mp_at_1,
            "map": self.map,
            "precision_at_k": {str(k): float(v.mean()) for k, v in self.precision_at_k.items()},
            "recall_at_k": {str(k): float(v.mean()) for k, v in self.recall_at_k.items()},
        }
        if per_query:
            out["per_query"] = {
                "precision_at_1": self.precision_at_1.tolist(),
                "average_precision": self.average_precision.tolist(),
                "recall_at_k": {str(k): v.tolist() for k, v in self.recall_at_k.items()},
            }
        return out


def evaluate_retrieval(
    scores: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
    ties: TieMode = "pessimistic",
) -> RetrievalReport:
    """mP@1, mAP, Precision@k and Recall@k of a ``(Q, G)`` score matrix."""
    s = checks.float_array(scores, "scores", 2)
    q = checks.labels(query_labels, "query_labels", length=s.shape[0])
    g = checks.labels(gallery_labels, "gallery_labels", length=s.shape[1])
    ks = tuple(checks.positive_int(k, "each k in ks") for k in ks)
    rel = relevance(q, g)
    missing = np.flatnonzero(~rel.any(axis=1))
    if missing.size:
        raise ValueError(
            f"{missing.size} queries have a label absent from the gallery (first indices: "
            f"{missing[:5].tolist()}); exclude them with queries_in_gallery() first"
        )
    ranked = ranked_relevance(s, rel, ties)
    return RetrievalReport(
        ties=ties,
        n_gallery=int(s.shape[1]),
        precision_at_1=precision_at_k(ranked, 1),
        average_precision=average_precision(ranked),
        precision_at_k={k: precision_at_k(ranked, k) for k in ks},
        recall_at_k={k: recall_at_k(ranked, k) for k in ks},
    )

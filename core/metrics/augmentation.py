"""Retrieval post-processing of descriptors (paper 004, sections 5.4.2-5.4.4).

Each function takes descriptors (normalised or not; they are L2-normalised first) and
returns new L2-normalised descriptors; the caller re-queries with ``ranking.similarity``.
Neighbours are found with the stable ranking of :mod:`ranking` (ties: lower gallery
index first), so the results are deterministic.
"""

from __future__ import annotations

import numpy as np

from muselens.core import checks
from muselens.core.metrics.ranking import l2_normalize, similarity, top_k


def instance_average(descriptors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One descriptor per instance: the mean of its images' descriptors, re-normalised (5.4.4).

    Returns ``(descriptors (L, D), labels (L,))`` with the labels sorted (``np.unique`` order).
    Instances whose descriptors cancel out to a zero mean are refused (ValueError).
    """
    x = l2_normalize(checks.float_array(descriptors, "descriptors", 2))
    y = checks.labels(labels, "labels", length=x.shape[0])
    unique, inverse = np.unique(y, return_inverse=True)
    sums = np.zeros((unique.shape[0], x.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, x)
    counts = np.bincount(inverse, minlength=unique.shape[0])[:, None]
    return l2_normalize((sums / counts).astype(x.dtype)), unique


def average_query_expansion(queries: np.ndarray, gallery: np.ndarray, k: int = 1) -> np.ndarray:
    """Expanded queries: each query plus its top-``k`` gallery descriptors, summed, re-normalised (5.4.2).

    Re-query with ``similarity(expanded, gallery)``. ``k`` is capped at the gallery size.
    """
    k = checks.positive_int(k, "k")
    q = l2_normalize(checks.float_array(queries, "queries", 2))
    g = l2_normalize(checks.float_array(gallery, "gallery", 2))
    neighbours, _ = top_k(similarity(q, g), k)
    return l2_normalize(q + g[neighbours].sum(axis=1))


def rank_weights(k: int) -> np.ndarray:
    """Weights ``(k+1-r)/(k+1)`` for r = 0 (the item itself) .. k (its k-th neighbour)."""
    k = checks.positive_int(k, "k")
    return (k + 1 - np.arange(k + 1)) / (k + 1)


def database_side_augmentation(gallery: np.ndarray, k: int = 1) -> np.ndarray:
    """Replace each gallery descriptor by a rank-weighted sum of itself and its k nearest neighbours (5.4.3).

    The item itself has weight 1 and its r-th nearest *other* gallery item weight
    ``(k+1-r)/(k+1)``; the sum is re-normalised. The item is excluded from its own
    neighbour list explicitly, so duplicates in the gallery do not displace it.
    """
    k = checks.positive_int(k, "k")
    g = l2_normalize(checks.float_array(gallery, "gallery", 2))
    if k >= g.shape[0]:
        raise ValueError(f"k={k} needs at least k+1={k + 1} gallery items, got {g.shape[0]}")
    scores = similarity(g, g)
    np.fill_diagonal(scores, -np.inf)  # never a neighbour of itself
    # Same stable order as ranking.rank, which would refuse the -inf diagonal.
    neighbours = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    w = rank_weights(k).astype(g.dtype)
    augmented = w[0] * g + np.einsum("r,grd->gd", w[1:], g[neighbours])
    return l2_normalize(augmented)

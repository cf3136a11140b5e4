"""Cosine similarity and deterministic ranking of a gallery (paper 004, section 4.3).

Descriptors are L2-normalised, so the dot product is the cosine similarity and, by
``||x - y||^2 = 2 - 2 x.y`` (eq. 4.8), ranking by it equals ranking by Euclidean distance.
The whole query batch is compared to the gallery by one matrix product.

Tie-breaking (used everywhere a ranking is produced in muselens): gallery items are
sorted by decreasing score with a *stable* sort, so items with equal scores keep their
gallery order -- the lower gallery index ranks first. The result therefore depends only
on the scores and the gallery order, never on the sorting algorithm or the platform.
"""

from __future__ import annotations

import numpy as np

from muselens.core import checks


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Scale each vector along ``axis`` to unit L2 norm.

    A zero vector has no direction, so it is refused (ValueError) rather than
    silently left at zero or divided by an epsilon.
    """
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"l2_normalize needs a floating dtype, got {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"l2_normalize got an empty array of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("l2_normalize got non-finite values (NaN or inf)")
    norms = np.linalg.norm(arr, axis=axis, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("l2_normalize got a zero vector, which has no direction")
    return arr / norms


def similarity(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Cosine similarities ``(Q, G)`` of queries ``(Q, D)`` against a gallery ``(G, D)``.

    Both sides are L2-normalised here, so callers may pass raw descriptors. The dtype
    follows numpy promotion (float32 with float32 stays float32).
    """
    q = checks.float_array(queries, "queries", 2)
    g = checks.float_array(gallery, "gallery", 2)
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"queries have dimension {q.shape[1]} but gallery has dimension {g.shape[1]}"
        )
    return l2_normalize(q) @ l2_normalize(g).T


def rank(scores: np.ndarray) -> np.ndarray:
    """Gallery indices ``(Q, G)`` of each query, best first; ties keep gallery order."""
    s = checks.float_array(scores, "scores", 2)
    return np.argsort(-s, axis=1, kind="stable")


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best gallery indices and their scores per query, each ``(Q, min(k, G))``.

    Uses the same stable ranking as :func:`rank`, so ``top_k(s, k)[0] == rank(s)[:, :k]``.
    """
    k = checks.positive_int(k, "k")
    order = rank(scores)[:, :k]
    return order, np.take_along_axis(np.asarray(scores), order, axis=1)

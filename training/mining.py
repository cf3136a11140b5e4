"""Offline triplet mining over the whole training set (paper 004, section 3.2.3).

Before each pass over the training data, all descriptors are compared by dot product. Every
positive pair ``(a, p)`` (same label, ``a != p``, both orders) gets one negative ``n``:

* ``"semi-hard"``: the hardest negative that is still easier than the positive, i.e. the
  largest ``a.n`` with ``a.n < a.p`` (strictly). When no negative is easier than the positive
  (every negative at least as similar as ``p``), ``fallback="easiest"`` takes the easiest
  negative (smallest ``a.n``; TensorFlow's ``triplet_semihard_loss`` does the same), so every
  positive pair keeps a triplet, as the paper uses "all possible positive couples";
  ``fallback="skip"`` drops the pair instead.
* ``"hardest"``: the negative with the largest ``a.n``.

Ties between negatives go to the smaller index. The paper's schedule is semi-hard for the first
two passes, hardest afterwards (:func:`strategy_for_epoch`).

Cost: the ``N x N`` similarities are formed ``chunk`` anchor rows at a time (on the
descriptors' device), the semi-hard search is ``O(P * N)`` for ``P`` positive pairs, in blocks
of about ``block_elements`` values, so memory stays bounded whatever the class sizes.
"""

from __future__ import annotations

from muselens.core import checks
import numpy as np
import torch

STRATEGIES = ("semi-hard", "hardest")
FALLBACKS = ("easiest", "skip")
SEMI_HARD_EPOCHS = 2  # paper 004: "semi-hard triplet selection for the first two passes"
BLOCK_ELEMENTS = 1 << 22  # values per semi-hard search block (16 MB of float32)


def strategy_for_epoch(epoch: int, semi_hard_epochs: int = SEMI_HARD_EPOCHS) -> str:
    """``"semi-hard"`` for epochs ``0 .. semi_hard_epochs - 1``, ``"hardest"`` after."""
    for name, value in (("epoch", epoch), ("semi_hard_epochs", semi_hard_epochs)):
        checks.integer(value, name, low=0)
    return "semi-hard" if epoch < semi_hard_epochs else "hardest"


def _check_choice(strategy: object, fallback: object) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")


def _check_labels(labels: object, n: int) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy array or torch.Tensor, got {type(labels).__name__}")
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"labels must be ({n},), got shape {labels.shape}")
    if np.unique(labels).size < 2:
        raise ValueError("mining needs at least two labels (there would be no negatives)")
    return labels.astype(np.int64, copy=False)


def mine_from_similarity(
    similarity_rows: np.ndarray,
    row_ids: np.ndarray,
    labels: np.ndarray,
    strategy: str,
    fallback: str = "easiest",
    block_elements: int = BLOCK_ELEMENTS,
) -> np.ndarray:
    """Triplets ``(T, 3)`` int64 for anchors ``row_ids`` from their similarity rows ``(R, N)``.

    ``similarity_rows[r, j]`` is ``a.j`` for anchor ``row_ids[r]``. Rows are in anchor order
    (as given), then positive index ascending.
    """
    _check_choice(strategy, fallback)
    labels = _check_labels(labels, similarity_rows.shape[1] if similarity_rows.ndim == 2 else -1)
    row_ids = np.asarray(row_ids, dtype=np.int64)
    n = labels.shape[0]
    if similarity_rows.ndim != 2 or similarity_rows.shape != (row_ids.shape[0], n):
        raise ValueError(f"similarity rows must be ({row_ids.shape[0]}, {n}), got {similarity_rows.shape}")
    if not np.issubdtype(similarity_rows.dtype, np.floating):
        raise TypeError(f"similarities must be floating point, got {similarity_rows.dtype}")
    if np.isnan(similarity_rows).any():
        raise ValueError("similarities contain NaN")
    if row_ids.size and (row_ids.min() < 0 or row_ids.max() >= n):
        raise ValueError(f"row ids must lie in [0, {n})")
    checks.positive_int(block_elements, "block_elements")

    same = labels[row_ids][:, None] == labels[None, :]
    positive = same.copy()
    positive[np.arange(row_ids.size), row_ids] = False
    rows, pos = np.nonzero(positive)  # row-major: anchor order, then positive ascending
    neg_values = np.where(same, -np.inf, similarity_rows)
    if strategy == "hardest":
        neg = np.argmax(neg_values, axis=1)[rows]  # first maximum: the smallest index among ties
        return np.stack((row_ids[rows], pos, neg), axis=1)

    easiest = np.argmin(np.where(same, np.inf, similarity_rows), axis=1)
    neg = np.empty_like(pos)
    found = np.empty(pos.shape, dtype=bool)
    step = max(1, block_elements // n)
    for start in range(0, pos.size, step):
        r, p = rows[start:start + step], pos[start:start + step]
        s_ap = similarity_rows[r, p]
        candidates = neg_values[r]
        candidates[~(candidates < s_ap[:, None])] = -np.inf  # only negatives strictly easier than p
        best = np.argmax(candidates, axis=1)
        neg[start:start + step] = best
        found[start:start + step] = candidates[np.arange(r.size), best] > -np.inf
    if fallback == "easiest":
        neg = np.where(found, neg, easiest[rows])
        keep = slice(None)
    else:
        keep = found
    return np.stack((row_ids[rows][keep], pos[keep], neg[keep]), axis=1)


def mine_triplets(
    descriptors: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    strategy: str = "semi-hard",
    fallback: str = "easiest",
    chunk: int = 1024,
) -> np.ndarray:
    """Paper 004's offline mining: one triplet per positive pair, ``(T, 3)`` int64 numpy array.

    ``descriptors`` ``(N, D)`` are the current descriptors of the whole training set (the
    network L2-normalises them, so dot products are cosine similarities).
    """
    x = torch.from_numpy(descriptors) if isinstance(descriptors, np.ndarray) else descriptors
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"descriptors must be a numpy array or torch.Tensor, got {type(descriptors).__name__}")
    x = x.detach()
    if not x.is_floating_point() or x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"descriptors must be a float (N, D) array with N >= 2, got {x.dtype} {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("descriptors contain NaN or infinity")
    checks.positive_int(chunk, "chunk")
    _check_choice(strategy, fallback)
    y = _check_labels(labels, x.shape[0])
    parts = []
    for start in range(0, x.shape[0], chunk):
        stop = min(start + chunk, x.shape[0])
        sims = (x[start:stop] @ x.T).cpu().numpy()
        parts.append(mine_from_similarity(sims, np.arange(start, stop), y, strategy, fallback))
    return np.concatenate(parts).astype(np.int64, copy=False)

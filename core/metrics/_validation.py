"""Input checks shared by the metric modules: one place, so every metric fails the same way."""

from __future__ import annotations

import numpy as np


def float_matrix(x: object, name: str) -> np.ndarray:
    """Return ``x`` as a non-empty, finite, floating-point 2-D array or raise naming ``name``."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype, got {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def float_vector(x: object, name: str) -> np.ndarray:
    """Return ``x`` as a non-empty, finite, floating-point 1-D array or raise naming ``name``."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype, got {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def labels(x: object, name: str, length: int | None = None) -> np.ndarray:
    """Return ``x`` as a 1-D array of integer or string labels (floats are refused: NaN != NaN)."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iuUSO":
        raise TypeError(f"{name} must hold integers or strings, got dtype {arr.dtype}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {length}")
    return arr


def bool_vector(x: object, name: str, length: int) -> np.ndarray:
    """Return ``x`` as a 1-D boolean array of the given length."""
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.dtype != np.bool_:
        raise TypeError(f"{name} must be a 1-D boolean array, got dtype {arr.dtype}, shape {arr.shape}")
    if arr.shape[0] != length:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {length}")
    return arr


def positive_int(k: object, name: str) -> int:
    """Return ``k`` as a Python int >= 1 (bools are refused)."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")
    return int(k)

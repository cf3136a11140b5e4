"""Input checks shared by the explanation modules, so every entry point fails the same way.

Every problem with an array (shape, dtype, non-finite value, index out of range) raises
``ValueError`` naming the argument; only a wrong Python object type raises ``TypeError``.
"""

from __future__ import annotations

import math

import numpy as np


def float_array(x: object, name: str, ndim: int) -> np.ndarray:
    """``x`` as a non-empty, finite, real floating-point array with ``ndim`` dimensions."""
    arr = np.asarray(x)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must have a real floating dtype, got {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def vector(x: object, name: str, dim: int) -> np.ndarray:
    """A finite float vector ``(dim,)`` as float64."""
    arr = float_array(x, name, 1)
    if arr.shape[0] != dim:
        raise ValueError(f"{name} has {arr.shape[0]} dimensions, the map has {dim}")
    return arr.astype(np.float64)


def matrix(x: object, name: str, dim: int) -> np.ndarray:
    """Finite float row vectors ``(n, dim)``, ``n >= 1``, as float64."""
    arr = float_array(x, name, 2)
    if arr.shape[1] != dim:
        raise ValueError(f"{name} has {arr.shape[1]} dimensions per row, the map has {dim}")
    return arr.astype(np.float64)


def locations(x: object, name: str, cells: int) -> np.ndarray:
    """Distinct flat cell indices ``(k,)`` in ``[0, cells)``, ``1 <= k <= cells``, as int64.

    Distinct because the exported graph picks ``k`` different cells (``TopK`` on a map of at
    least ``k`` cells); a repeated index means the outputs do not belong together.
    """
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (k,), got shape {arr.shape}")
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    k = arr.shape[0]
    if k == 0:
        raise ValueError(f"{name} must not be empty")
    if k > cells:
        raise ValueError(f"{name} has k={k} entries but the map has only {cells} cells")
    if int(arr.min()) < 0 or int(arr.max()) >= cells:
        raise ValueError(f"{name} must lie in [0, {cells}), got values from {int(arr.min())} to {int(arr.max())}")
    if np.unique(arr).shape[0] != k:
        raise ValueError(f"{name} repeats a cell; the k regions must be distinct cells")
    return arr.astype(np.int64)


def unit_interval(value: object, name: str) -> float:
    """A real number in ``[0, 1]`` as a Python float (bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out) or not 0.0 <= out <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return out


def rgb_image(x: object, name: str) -> np.ndarray:
    """An RGB ``uint8`` image ``(H, W, 3)`` with ``H, W >= 1``."""
    arr = np.asarray(x)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) RGB, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    return arr


def size(value: object, name: str) -> tuple[int, int]:
    """A ``(height, width)`` pair of positive ints."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a (height, width) pair, got {value!r}")
    for v in value:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must hold positive ints, got {value!r}")
    return int(value[0]), int(value[1])

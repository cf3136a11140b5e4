"""Argument checks, written once: every layer validates its inputs with these, so a bad value
fails the same way everywhere and the message names the argument, what it must be and what it got.

Numbers: bools are refused wherever a number is expected (``True`` is an ``int`` to Python, never
a count or a margin to muselens); numpy scalars are accepted and returned as Python scalars.
Arrays: a wrong shape, an empty array or a non-finite value is a ``ValueError``.

A value of the wrong type raises :class:`WrongTypeError`, a ``TypeError`` that is also a
``ValueError``: callers that turn bad input into an exit status or a gRPC status catch
``ValueError`` and get both. Every other problem raises ``ValueError``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


class WrongTypeError(TypeError, ValueError):
    """An argument of the wrong type (a ``TypeError``, and a ``ValueError`` for callers that
    treat every bad input alike)."""


def _n(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _bounds(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    """The range in words: ``">= 1"``, ``"> 0"``, ``"<= 5"``, ``"lie in [0, 1]"``, ``"lie in (0, 1]"``."""
    low_text, high_text = (None if v is None else _n(v) for v in (low, high))
    if low is not None and high is not None:
        return f"lie in {'(' if low_open else '['}{low_text}, {high_text}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low_text}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high_text}"
    return ""


def is_integer(value: object) -> bool:
    """Whether ``value`` is an integer (Python or numpy) and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_number(value: object) -> bool:
    """Whether ``value`` is a real number (Python or numpy) and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def integer(value: object, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python int in ``[low, high]`` (either bound may be omitted).

    >>> integer(3, "k", low=1)
    3
    """
    bounds = _bounds(low, high)
    if not is_integer(value):
        within = f" in [{_n(low)}, {_n(high)}]" if low is not None and high is not None else f" {bounds}" if bounds else ""
        raise WrongTypeError(f"{name} must be an int{within}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must {'' if bounds.startswith('lie') else 'be '}{bounds}, got {value!r}")
    return int(value)


def positive_int(value: object, name: str) -> int:
    """``value`` as a Python int >= 1."""
    return integer(value, name, low=1)


def optional_int(value: object, name: str, *, low: int | None = None, high: int | None = None) -> int | None:
    """``None``, or :func:`integer` of ``value``."""
    return None if value is None else integer(value, name, low=low, high=high)


def number(value: object, name: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite Python float in the range (``low_open``/``high_open`` exclude the bound).

    >>> number(0.5, "alpha", low=0, high=1)
    0.5
    """
    if not is_number(value):
        raise WrongTypeError(f"{name} must be a number, got {value!r}")
    out = float(value)
    bounds = _bounds(low, high, low_open, high_open)
    below = low is not None and (out < low or (low_open and out == low))
    above = high is not None and (out > high or (high_open and out == high))
    if not math.isfinite(out) or below or above:
        if low is not None and high is not None:
            raise ValueError(f"{name} must {bounds}, got {value!r}")
        raise ValueError(f"{name} must be finite{' and ' + bounds if bounds else ''}, got {value!r}")
    return out


def flag(value: object, name: str) -> bool:
    """``value`` if it is a bool (numpy bools accepted); 0 and 1 are not."""
    if not isinstance(value, (bool, np.bool_)):
        raise WrongTypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def byte_string(value: object, name: str) -> bytes:
    """``bytes`` from a bytes-like object (bytes, bytearray, memoryview); anything else is a caller bug."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be bytes, bytearray or memoryview, got {type(value).__name__}")


def text(value: object, name: str) -> str:
    """``value`` if it is a non-blank string."""
    if not isinstance(value, str):
        raise WrongTypeError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


def one_of(value: T, name: str, choices: Collection[T]) -> T:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def mapping(value: object, name: str) -> Mapping[str, Any]:
    """``value`` if it is a mapping (a dict)."""
    if not isinstance(value, Mapping):
        raise WrongTypeError(f"{name} must be a dict, got {type(value).__name__}")
    return value


# -- arrays ------------------------------------------------------------------------------------


def float_array(x: object, name: str, ndim: int) -> np.ndarray:
    """``x`` as a non-empty, finite, real floating-point array with ``ndim`` dimensions."""
    arr = np.asarray(x)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise WrongTypeError(f"{name} must have a real floating dtype, got {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def _expected(dim: int, of: str | None) -> str:
    return f"{of} has {dim}" if of else f"expected {dim}"


def vector(x: object, name: str, dim: int, *, of: str | None = None) -> np.ndarray:
    """A finite float vector ``(dim,)`` as float64; ``of`` names what fixes ``dim`` (e.g. "the map")."""
    arr = float_array(x, name, 1)
    if arr.shape[0] != dim:
        raise ValueError(f"{name} has {arr.shape[0]} dimensions, {_expected(dim, of)}")
    return arr.astype(np.float64)


def rows(x: object, name: str, dim: int, *, of: str | None = None) -> np.ndarray:
    """Finite float row vectors ``(n, dim)``, ``n >= 1``, as float64."""
    arr = float_array(x, name, 2)
    if arr.shape[1] != dim:
        raise ValueError(f"{name} has {arr.shape[1]} dimensions per row, {_expected(dim, of)}")
    return arr.astype(np.float64)


def labels(x: object, name: str, length: int | None = None) -> np.ndarray:
    """``x`` as a 1-D array of integer or string labels (floats are refused: NaN != NaN)."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iuUSO":
        raise WrongTypeError(f"{name} must hold integers or strings, got dtype {arr.dtype}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {length}")
    return arr


def bool_vector(x: object, name: str, length: int) -> np.ndarray:
    """``x`` as a 1-D boolean array of the given length."""
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.dtype != np.bool_:
        raise WrongTypeError(f"{name} must be a 1-D boolean array, got dtype {arr.dtype}, shape {arr.shape}")
    if arr.shape[0] != length:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {length}")
    return arr


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
    if not all(is_integer(v) and v >= 1 for v in value):
        raise ValueError(f"{name} must hold positive ints, got {value!r}")
    return int(value[0]), int(value[1])

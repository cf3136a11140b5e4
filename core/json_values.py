"""JSON values frozen and thawed: a read-only deep copy of a JSON value (dict -> read-only
mapping, list -> tuple), so a frozen dataclass holding free-form JSON (a bundle manifest's
training configuration, the extra keys of a descriptor contract) really is immutable.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


def freeze(value: Any, name: str) -> Any:
    """A read-only deep copy of a JSON value; raise naming ``name`` on a non-JSON type.

    Tuples are accepted as lists and numpy scalars as Python numbers; dict keys must be
    strings (``json`` would silently turn ``1`` into ``"1"`` and the value would not read
    back equal).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):  # numpy integers too, stored as Python ints
        return int(value)
    if isinstance(value, numbers.Real):  # numpy floats too, stored as Python floats
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{name} has a non-string key {key!r}")
            out[key] = freeze(item, f"{name}.{key}")
        return MappingProxyType(out)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item, f"{name}[{i}]") for i, item in enumerate(value))
    raise TypeError(f"{name} must hold only JSON types (dict, list, str, int, float, bool, None), "
                    f"got {type(value).__name__}")


def thaw(value: Any) -> Any:
    """The plain, mutable JSON value of a frozen one (mapping -> dict, tuple -> list)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(item) for item in value]
    return value

"""Strict JSON for bundle files: no NaN/Infinity, no duplicate keys, plain types only.

Everything a bundle stores besides the models and the gallery is JSON, so nothing is ever
unpickled. Free-form dicts (training configuration, descriptor contract) are checked to hold
only JSON types and are frozen (dict -> read-only mapping, list -> tuple) so a frozen
:class:`~muselens.runtime.bundle.manifest.Manifest` really is immutable.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


def loads(data: bytes | str, source: str) -> Any:
    """Parse JSON, refusing NaN/Infinity and duplicate keys (which ``json`` accepts silently)."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{source}: {name} is not allowed in a bundle file")

    def unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"{source}: duplicate key {key!r}")
            out[key] = value
        return out

    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=unique_pairs)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source} is not UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc}") from exc


def dumps(obj: Any) -> bytes:
    """Readable, deterministic UTF-8 JSON (sorted keys) for files people may open."""
    return (json.dumps(thaw(obj), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")


def canonical(obj: Any) -> bytes:
    """The byte string a checksum over JSON content is computed on: sorted, compact, ASCII."""
    return json.dumps(thaw(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


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

"""Strict JSON for bundle files: no NaN/Infinity, no duplicate keys, plain types only.

Everything a bundle stores besides the models and the gallery is JSON, so nothing is ever
unpickled. Free-form dicts (training configuration, descriptor contract) are checked to hold
only JSON types and are frozen (:func:`muselens.core.json_values.freeze`) so a frozen
:class:`~muselens.runtime.bundle.manifest.Manifest` really is immutable.
"""

from __future__ import annotations

import json
from typing import Any

from muselens.core.json_values import thaw


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

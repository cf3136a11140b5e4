"""``labels.json``: the title and metadata the runtime reports for each recognised artwork.

A JSON list ``[{"id", "title", "metadata": {str: str}}]`` sorted by id. It must describe every
instance of the gallery; it may also describe artworks without gallery images (e.g. listed in
the museum's ``instances.csv`` before they were photographed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from muselens.runtime.bundle import _json


@dataclass(frozen=True)
class LabelInfo:
    """One artwork as the runtime reports it (same fields as the dataset's ``InstanceInfo``)."""

    id: str
    title: str
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("id", "title"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"label {name} must be a string, got {type(value).__name__}")
            if not value or "\x00" in value:
                raise ValueError(f"label {name} must be non-empty text without NUL, got {value!r}")
        if not isinstance(self.metadata, Mapping):
            raise TypeError(f"label {self.id!r} metadata must be a dict, got {type(self.metadata).__name__}")
        for key, value in self.metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"label {self.id!r} metadata must map strings to strings, "
                                f"got {key!r}: {value!r}")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "metadata": dict(self.metadata)}

    @classmethod
    def from_dict(cls, data: object) -> LabelInfo:
        if not isinstance(data, Mapping):
            raise TypeError(f"a label must be a JSON object, got {type(data).__name__}")
        if set(data) != {"id", "title", "metadata"}:
            raise ValueError(f"a label has exactly the keys id, title, metadata; got {sorted(data)}")
        return cls(data["id"], data["title"], data["metadata"])


def index_labels(labels: Iterable[LabelInfo]) -> dict[str, LabelInfo]:
    """Labels by id, sorted; duplicates and non-LabelInfo items are refused."""
    out: dict[str, LabelInfo] = {}
    for label in labels:
        if not isinstance(label, LabelInfo):
            raise TypeError(f"labels must be LabelInfo objects, got {type(label).__name__}")
        if label.id in out:
            raise ValueError(f"label id {label.id!r} appears twice")
        out[label.id] = label
    if not out:
        raise ValueError("labels must describe at least one instance")
    return dict(sorted(out.items()))


def check_coverage(labels: Mapping[str, LabelInfo], instance_ids: Iterable[str]) -> None:
    """Refuse a gallery instance without a label, naming (up to ten of) them."""
    missing = sorted(set(instance_ids) - set(labels))
    if missing:
        shown = ", ".join(repr(m) for m in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise ValueError(f"labels do not cover {len(missing)} gallery instance(s): {shown}{more}")


def labels_to_json(labels: Iterable[LabelInfo]) -> bytes:
    return _json.dumps([label.to_dict() for label in index_labels(labels).values()])


def labels_from_json(data: bytes, source: str = "labels.json") -> dict[str, LabelInfo]:
    raw = _json.loads(data, source)
    if not isinstance(raw, list):
        raise ValueError(f"{source} must hold a JSON list of labels, got {type(raw).__name__}")
    try:
        return index_labels(LabelInfo.from_dict(item) for item in raw)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{source}: {exc}") from exc

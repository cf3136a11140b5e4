"""The museum dataset format and its loader.

A museum is a directory::

    references/<instance_id>/*.{jpg,jpeg,png}   photos of each artwork, the gallery
    queries/<instance_id>/*                      photos to recognise, labelled by artwork
    distractors/*                                optional: photos of no known artwork
    instances.csv                                optional: id,title[,free metadata columns]

Loading only lists files; decoding happens where the pixels are needed, so one corrupt file
costs one skipped image, never the run.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from muselens.core.data.images import IMAGE_SUFFIXES

SPLITS = ("references", "queries", "distractors")


class DatasetError(ValueError):
    """A dataset that cannot be used as it is; the message says what to fix."""


@dataclass(frozen=True)
class ImageRecord:
    """One photo: where it is, which split it belongs to and which artwork it shows."""

    path: Path
    split: str
    instance_id: str | None  # None for distractors


@dataclass(frozen=True)
class InstanceInfo:
    id: str
    title: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class MuseumDataset:
    root: Path
    references: list[ImageRecord]
    queries: list[ImageRecord]
    distractors: list[ImageRecord]
    instances: dict[str, InstanceInfo]
    # Queries of an artwork with no reference photo: excluded from evaluation, as in the paper.
    orphan_queries: list[ImageRecord]
    # Files inside the splits that are not images by their suffix, or are misplaced.
    ignored_files: list[Path]

    @classmethod
    def load(cls, root: Path | str) -> MuseumDataset:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root} is not a directory: point to a museum dataset folder "
                               "holding references/<instance_id>/*.jpg")
        ref_dir = root / "references"
        if not ref_dir.is_dir():
            present = sorted(p.name for p in root.iterdir())[:10]
            raise DatasetError(
                f"{root} has no references/ folder (found: {present or 'nothing'}). "
                "Put each artwork's photos in references/<instance_id>/ and queries in "
                "queries/<instance_id>/."
            )
        ignored: list[Path] = []
        references = _labelled_split(root, "references", ignored)
        if not references:
            raise DatasetError(
                f"{ref_dir} holds no images: expected references/<instance_id>/*.jpg|jpeg|png "
                "(one folder per artwork, images directly inside it)"
            )
        queries = _labelled_split(root, "queries", ignored)
        distractors = _flat_split(root, "distractors", ignored)
        known = {r.instance_id for r in references}
        orphans = [q for q in queries if q.instance_id not in known]
        queries = [q for q in queries if q.instance_id in known]
        instances = _read_instances(root / "instances.csv", sorted(known))
        return cls(root, references, queries, distractors, instances, orphans, ignored)

    @property
    def instance_ids(self) -> list[str]:
        """Every artwork with at least one reference photo, sorted."""
        return sorted({r.instance_id for r in self.references if r.instance_id is not None})

    def images_per_instance(self, split: str = "references") -> dict[str, int]:
        records = {"references": self.references, "queries": self.queries}[split]
        return dict(Counter(r.instance_id for r in records))

    def all_records(self) -> list[ImageRecord]:
        return [*self.references, *self.queries, *self.distractors]


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _labelled_split(root: Path, split: str, ignored: list[Path]) -> list[ImageRecord]:
    split_dir = root / split
    if not split_dir.is_dir():
        return []
    records = []
    for entry in sorted(split_dir.iterdir()):
        if entry.is_dir():
            for path in sorted(entry.iterdir()):
                if _is_image(path):
                    records.append(ImageRecord(path, split, entry.name))
                elif not path.name.startswith("."):
                    ignored.append(path)
        elif not entry.name.startswith("."):
            ignored.append(entry)  # an image directly in references/ has no artwork folder
    return records


def _flat_split(root: Path, split: str, ignored: list[Path]) -> list[ImageRecord]:
    split_dir = root / split
    if not split_dir.is_dir():
        return []
    records = []
    for path in sorted(split_dir.rglob("*")):
        if _is_image(path):
            records.append(ImageRecord(path, split, None))
        elif path.is_file() and not path.name.startswith("."):
            ignored.append(path)
    return records


def _read_instances(csv_path: Path, instance_ids: list[str]) -> dict[str, InstanceInfo]:
    """Titles and metadata from instances.csv; artworks it does not list get their id as title."""
    infos = {i: InstanceInfo(i, i) for i in instance_ids}
    if not csv_path.exists():
        return infos
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "id" not in reader.fieldnames:
            raise DatasetError(f"{csv_path} must have a header row with an 'id' column "
                               f"(found {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            iid = (row.get("id") or "").strip()
            if not iid:
                raise DatasetError(f"{csv_path}:{line}: empty id")
            title = (row.get("title") or "").strip() or iid
            meta = {k: v for k, v in row.items() if k not in ("id", "title") and k is not None}
            infos[iid] = InstanceInfo(iid, title, meta)
    return infos

"""What a museum dataset holds and what is wrong with it (``muselens check-data``'s report).

Reports images per split, images per artwork (min / median / max, as Table 4.1 of the thesis),
unreadable files, queries of artworks without references, non-image files, and identical
files across splits (a query that is also a reference makes every score a lie).
"""

from __future__ import annotations

import hashlib
import statistics
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from muselens.core.data.images import ImageReadError, decode_image
from muselens.core.data.museum_dataset import ImageRecord, MuseumDataset


@dataclass
class DataReport:
    root: str
    images: dict[str, int]
    instances: dict[str, int]
    per_instance: dict[str, dict[str, float]]
    unreadable: list[dict[str, str]]
    orphan_queries: list[str]
    ignored_files: list[str]
    cross_split_duplicates: list[list[str]]
    usable: bool
    problems: list[str]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _inspect(record: ImageRecord) -> tuple[ImageRecord, str, str | None]:
    """(record, sha256 of the bytes, reason it is unreadable or None)."""
    try:
        data = record.path.read_bytes()
    except OSError as exc:
        return record, "", f"cannot read file ({exc.strerror or exc})"
    digest = hashlib.sha256(data).hexdigest()
    try:
        decode_image(data, source=record.path)
    except ImageReadError as error:
        return record, digest, error.reason
    return record, digest, None


def _spread(counts: list[int]) -> dict[str, float]:
    if not counts:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(counts), "median": statistics.median(counts), "max": max(counts)}


def check_dataset(dataset: MuseumDataset, *, workers: int = 4, progress: bool = True) -> DataReport:
    records = dataset.all_records() + dataset.orphan_queries
    unreadable: dict[Path, str] = {}
    by_hash: dict[str, set[tuple[str, Path]]] = defaultdict(set)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # cv2 decodes without the GIL
        results = pool.map(_inspect, records)
        for record, digest, reason in tqdm(results, total=len(records), desc="checking images",
                                           unit="img", disable=not progress, file=sys.stderr):
            if reason is not None:
                unreadable[record.path] = reason
            if digest:
                by_hash[digest].add((record.split, record.path))

    duplicates = [sorted(str(p) for _, p in group) for group in by_hash.values()
                  if len({split for split, _ in group}) > 1]

    readable_refs = [r for r in dataset.references if r.path not in unreadable]
    ref_counts = defaultdict(int)
    for r in readable_refs:
        ref_counts[r.instance_id] += 1
    query_counts = defaultdict(int)
    for q in dataset.queries:
        if q.path not in unreadable:
            query_counts[q.instance_id] += 1

    problems = []
    if not readable_refs:
        problems.append("no readable reference image: every file under references/ failed to decode")
    if not dataset.queries:
        problems.append("no queries: add queries/<instance_id>/*.jpg to evaluate (training still works)")
    usable = bool(readable_refs)

    return DataReport(
        root=str(dataset.root),
        images={
            "references": len(dataset.references),
            "queries": len(dataset.queries),
            "distractors": len(dataset.distractors),
            "orphan_queries": len(dataset.orphan_queries),
        },
        instances={"references": len(ref_counts), "queries": len(query_counts)},
        per_instance={"references": _spread(list(ref_counts.values())),
                      "queries": _spread(list(query_counts.values()))},
        unreadable=[{"path": str(p), "reason": r} for p, r in sorted(unreadable.items())],
        orphan_queries=[str(q.path) for q in dataset.orphan_queries],
        ignored_files=[str(p) for p in dataset.ignored_files],
        cross_split_duplicates=sorted(duplicates),
        usable=usable,
        problems=problems,
    )


def format_report(report: DataReport) -> str:
    lines = [f"museum dataset {report.root}", ""]
    lines.append(f"{'split':<14}{'images':>8}{'artworks':>10}{'min':>6}{'median':>8}{'max':>6}")
    for split in ("references", "queries"):
        s = report.per_instance[split]
        lines.append(f"{split:<14}{report.images[split]:>8}{report.instances[split]:>10}"
                     f"{s['min']:>6}{s['median']:>8g}{s['max']:>6}")
    lines.append(f"{'distractors':<14}{report.images['distractors']:>8}")
    sections = [
        ("unreadable files (skipped)", [f"{u['path']}: {u['reason']}" for u in report.unreadable]),
        ("queries whose artwork has no reference (excluded)", report.orphan_queries),
        ("identical files across splits", [" == ".join(g) for g in report.cross_split_duplicates]),
        ("ignored files (not an image, or not inside an artwork folder)", report.ignored_files),
    ]
    for title, items in sections:
        lines.append("")
        lines.append(f"{title}: {len(items)}")
        lines.extend(f"  {item}" for item in items[:50])
        if len(items) > 50:
            lines.append(f"  ... and {len(items) - 50} more (see the JSON report)")
    for problem in report.problems:
        lines.append(f"\nproblem: {problem}")
    lines.append("\nverdict: " + ("usable" if report.usable else "NOT usable"))
    return "\n".join(lines)

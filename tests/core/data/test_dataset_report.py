from __future__ import annotations

import shutil

from muselens.core.data.dataset_report import check_dataset
from muselens.core.data.museum_dataset import MuseumDataset
from tests.conftest import write_image


def _report(root):
    return check_dataset(MuseumDataset.load(root), progress=False)


def test_clean_museum(tiny_museum):
    report = _report(tiny_museum)
    assert report.usable and report.problems == []
    assert report.images == {"references": 6, "queries": 3, "distractors": 2, "orphan_queries": 0}
    assert report.per_instance["references"] == {"min": 2, "median": 2, "max": 2}
    assert report.unreadable == [] and report.cross_split_duplicates == []


def test_images_per_instance_spread(tiny_museum):
    for k in range(3):
        write_image(tiny_museum / "references" / "a0" / f"extra{k}.png", 100 + k)
    report = _report(tiny_museum)
    assert report.per_instance["references"] == {"min": 2, "median": 2, "max": 5}


def test_corrupt_files_are_listed_and_skipped(tiny_museum):
    bad = tiny_museum / "references" / "a1" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    empty = tiny_museum / "queries" / "a2" / "empty.jpg"
    empty.write_bytes(b"")
    report = _report(tiny_museum)
    assert {u["path"] for u in report.unreadable} == {str(bad), str(empty)}
    assert report.per_instance["references"]["max"] == 2  # the broken one is not counted
    assert report.usable


def test_orphan_queries_are_listed(tiny_museum):
    orphan = write_image(tiny_museum / "queries" / "ghost" / "q.jpg", 77)
    report = _report(tiny_museum)
    assert report.orphan_queries == [str(orphan)]
    assert report.images["queries"] == 3


def test_identical_files_across_splits_are_found(tiny_museum):
    ref = tiny_museum / "references" / "a0" / "r0.jpg"
    leak = tiny_museum / "queries" / "a0" / "leak.jpg"
    shutil.copy(ref, leak)
    # identical files inside one split are not a leak
    shutil.copy(ref, tiny_museum / "references" / "a0" / "copy.jpg")
    report = _report(tiny_museum)
    assert len(report.cross_split_duplicates) == 1
    assert set(report.cross_split_duplicates[0]) >= {str(ref), str(leak)}

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from muselens.core.data.museum_dataset import MuseumDataset
from muselens.core.synthetic.camera import QUERY, REFERENCE
from muselens.core.synthetic.museum import (
    GENERATOR,
    INSTANCES_PER_FAMILY,
    is_synthetic_museum,
    make_museum,
    plan_museum,
    wants_global_view,
)

TINY = dict(instances=3, references=2, queries=1, distractors=2, size=96)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("museum") / "m"
    make_museum(out, **TINY, seed=11, workers=1, progress=False)
    return out


def test_layout_is_a_loadable_museum_dataset(tiny):
    ds = MuseumDataset.load(tiny)
    assert ds.instance_ids == ["a000", "a001", "a002"]
    assert ds.images_per_instance("references") == {"a000": 2, "a001": 2, "a002": 2}
    assert ds.images_per_instance("queries") == {"a000": 1, "a001": 1, "a002": 1}
    assert len(ds.distractors) == 2 and not ds.ignored_files and not ds.orphan_queries
    with (tiny / "instances.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["id", "title", "kind"]
    assert {r["kind"] for r in rows} <= {"painting", "texture", "poster", "cabinet"}
    assert all(r["title"] for r in rows)


def test_photos_are_jpegs_with_the_requested_long_side(tiny):
    for record in MuseumDataset.load(tiny).all_records():
        data = record.path.read_bytes()
        assert data[:2] == b"\xff\xd8", record.path
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert max(img.shape[:2]) == 96 and img.std() > 3


def test_museum_json_records_parameters_and_seed_only(tiny):
    meta = json.loads((tiny / "museum.json").read_text())
    assert meta["generator"] == GENERATOR and meta["seed"] == 11
    assert {k: meta[k] for k in TINY} == TINY
    assert meta["images"] == 3 * 3 + 2
    assert "run" not in meta, "timings would make the files depend on the machine"


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tiny, tmp_path):
    again = tmp_path / "again"
    summary = make_museum(again, **TINY, seed=11, workers=1, progress=False)
    assert summary["run"]["images_per_s"] > 0
    assert _files(again) == _files(tiny)
    other = tmp_path / "other"
    make_museum(other, **TINY, seed=12, workers=1, progress=False)
    a, b = _files(tiny), _files(other)
    images = [k for k in a if k.endswith(".jpg")]
    assert all(a[k] != b[k] for k in images)


def test_files_do_not_depend_on_the_number_of_workers(tiny, tmp_path):
    out = tmp_path / "two"
    summary = make_museum(out, **TINY, seed=11, workers=2, progress=False)
    assert summary["run"]["workers"] == 2
    assert _files(out) == _files(tiny)


def test_plan_shares_styles_between_a_few_instances():
    plan = plan_museum(instances=23, references=1, queries=1, distractors=0, seed=0, size=64)
    assert len(plan.styles) == 5
    per_family = np.bincount([i.family for i in plan.instances])
    assert per_family.max() <= INSTANCES_PER_FAMILY and per_family.min() >= 1
    assert len({i.kind for i in plan.instances}) == 4
    assert all(i.kind == plan.styles[i.family].kind for i in plan.instances)
    assert [i.id for i in plan.instances][:2] == ["a000", "a001"]
    big = plan_museum(instances=1001, references=1, queries=0, distractors=0, seed=0, size=64)
    assert big.instances[-1].id == "a1000"


@pytest.mark.parametrize("field, value, error", [
    ("instances", 0, ValueError), ("references", 0, ValueError), ("queries", -1, ValueError),
    ("distractors", -1, ValueError), ("seed", -3, ValueError), ("size", 63, ValueError),
    ("size", 5000, ValueError), ("workers", 0, ValueError), ("instances", 2.5, TypeError),
    ("references", True, TypeError),
])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, field, value, error):
    args = dict(TINY, seed=0, workers=1) | {field: value}
    with pytest.raises(error, match=field):
        make_museum(tmp_path / "m", **args, progress=False)
    assert not (tmp_path / "m").exists()


def test_a_foreign_non_empty_folder_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"not mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        make_museum(out, **TINY, seed=0, workers=1, progress=False)
    assert not is_synthetic_museum(out)
    make_museum(out, **TINY, seed=0, workers=1, progress=False, overwrite=True)
    assert is_synthetic_museum(out)
    assert (out / "holiday.jpg").read_bytes() == b"not mine", "only the museum's own entries are replaced"
    (out / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        make_museum(out / "file", **TINY, seed=0, workers=1, progress=False)


def test_a_previous_museum_is_replaced_without_leftovers(tmp_path):
    out = tmp_path / "m"
    make_museum(out, **(TINY | {"instances": 4, "distractors": 3}), seed=0, workers=1, progress=False)
    make_museum(out, **TINY, seed=0, workers=1, progress=False)
    ds = MuseumDataset.load(out)
    assert ds.instance_ids == ["a000", "a001", "a002"] and len(ds.distractors) == 2


def test_a_corrupt_museum_json_does_not_count_as_a_museum(tmp_path):
    (tmp_path / "museum.json").write_text("{not json")
    assert not is_synthetic_museum(tmp_path)
    (tmp_path / "museum.json").write_text(json.dumps({"generator": "someone else"}))
    assert not is_synthetic_museum(tmp_path)


def test_the_first_reference_is_always_a_global_view():
    rng = np.random.default_rng(0)
    assert all(wants_global_view("references", 0, rng, REFERENCE) for _ in range(50))
    later = [wants_global_view("references", 1, rng, REFERENCE) for _ in range(200)]
    queries = [wants_global_view("queries", 0, rng, QUERY) for _ in range(200)]
    assert 0.3 < np.mean(later) < 0.7 and 0.25 < np.mean(queries) < 0.55, "the rest mix global and detail"

from __future__ import annotations

import pytest

from muselens.core.data.museum_dataset import DatasetError, MuseumDataset
from tests.conftest import write_image


def test_loads_the_documented_layout(tiny_museum):
    ds = MuseumDataset.load(tiny_museum)
    assert ds.instance_ids == ["a0", "a1", "a2"]
    assert len(ds.references) == 6 and len(ds.queries) == 3 and len(ds.distractors) == 2
    assert ds.images_per_instance() == {"a0": 2, "a1": 2, "a2": 2}
    assert all(r.instance_id is None for r in ds.distractors)
    assert ds.instances["a1"].title == "a1"  # no instances.csv: the id is the title


def test_instances_csv_gives_titles_and_metadata(tiny_museum):
    (tiny_museum / "instances.csv").write_text("id,title,artist\na1,The Lake,Monet\n")
    ds = MuseumDataset.load(tiny_museum)
    assert ds.instances["a1"].title == "The Lake"
    assert ds.instances["a1"].metadata == {"artist": "Monet"}
    assert ds.instances["a0"].title == "a0"


def test_instances_csv_without_id_column_is_refused(tiny_museum):
    (tiny_museum / "instances.csv").write_text("name,title\na1,x\n")
    with pytest.raises(DatasetError, match="'id' column"):
        MuseumDataset.load(tiny_museum)


def test_orphan_queries_are_set_apart(tiny_museum):
    write_image(tiny_museum / "queries" / "zz" / "q.jpg", 99)
    ds = MuseumDataset.load(tiny_museum)
    assert [q.instance_id for q in ds.orphan_queries] == ["zz"]
    assert all(q.instance_id != "zz" for q in ds.queries)


def test_non_images_and_loose_files_are_ignored(tiny_museum):
    (tiny_museum / "references" / "a0" / "notes.txt").write_text("hi")
    write_image(tiny_museum / "references" / "loose.jpg", 5)
    ds = MuseumDataset.load(tiny_museum)
    assert sorted(p.name for p in ds.ignored_files) == ["loose.jpg", "notes.txt"]
    assert len(ds.references) == 6


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "not a directory"),
    (lambda root: (root / "queries").mkdir(parents=True), "no references/ folder"),
    (lambda root: (root / "references").mkdir(parents=True), "holds no images"),
])
def test_unusable_layouts_say_what_to_fix(tmp_path, make, message):
    root = tmp_path / "m"
    make(root)
    with pytest.raises(DatasetError, match=message):
        MuseumDataset.load(root)

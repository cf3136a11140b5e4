"""Datasets over reference photos: class indices, skipped unreadable files, per-epoch determinism."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from muselens.core.data.museum_dataset import DatasetError, ImageRecord, MuseumDataset
from muselens.core.preprocess import PreprocessContract, prepare_square
from muselens.training.augment import AugmentConfig
from muselens.training.datasets import (
    ClassificationDataset,
    FCNDataset,
    InstanceLabels,
    LabelledImages,
    PhotoViews,
    epoch_order,
    load_labelled_images,
)
from tests.conftest import write_image

CONTRACT = PreprocessContract(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear")


def _load(root: Path, **kwargs) -> LabelledImages:
    museum = MuseumDataset.load(root)
    return load_labelled_images(museum.references, InstanceLabels.from_museum(museum), **kwargs)


def test_class_index_is_the_position_in_sorted_instance_ids(tiny_museum):
    images = _load(tiny_museum)
    assert images.instance_labels.instance_ids == ("a0", "a1", "a2")
    assert len(images) == 6
    for record, label in zip(images.records, images.labels):
        assert images.instance_labels.instance_ids[label] == record.instance_id
    assert images.images[0].dtype == np.uint8 and images.images[0].shape == (48, 64, 3)


def test_instance_labels_validation():
    labels = InstanceLabels(("a", "b"))
    assert labels.index("b") == 1 and len(labels) == 2
    with pytest.raises(ValueError, match="not one of"):
        labels.index("zzz")
    with pytest.raises(ValueError, match="sorted and unique"):
        InstanceLabels(("b", "a"))
    with pytest.raises(ValueError, match="at least one"):
        InstanceLabels(())


def test_corrupt_image_is_skipped_with_a_warning(tiny_museum, caplog):
    bad = tiny_museum / "references" / "a1" / "r9.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with caplog.at_level(logging.WARNING):
        images = _load(tiny_museum)
    assert len(images) == 6
    assert [e.path for e in images.skipped.errors] == [bad]
    assert any("r9.jpg" in r.getMessage() for r in caplog.records)
    assert images.instances_without_images() == []


def test_instance_with_no_readable_photo_is_reported(tiny_museum, caplog):
    for path in (tiny_museum / "references" / "a2").iterdir():
        path.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        images = _load(tiny_museum)
    assert len(images.skipped) == 2 and len(images) == 4
    assert images.instances_without_images() == ["a2"]
    assert any("no readable photo" in r.getMessage() for r in caplog.records)
    assert images.instance_labels.index("a2") == 2  # the class keeps its index


def test_missing_query_photos_are_a_note_not_a_warning(tiny_museum, caplog):
    museum = MuseumDataset.load(tiny_museum)
    queries = [r for r in museum.queries if r.instance_id == "a0"]
    with caplog.at_level(logging.INFO):
        images = load_labelled_images(queries, InstanceLabels.from_museum(museum), purpose="validation")
    assert images.instances_without_images() == ["a1", "a2"]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "2 artwork(s) have no readable query photo: they are not validated")]
    with pytest.raises(ValueError, match="purpose must be one of"):
        load_labelled_images(queries, InstanceLabels.from_museum(museum), purpose="queries")


def test_nothing_readable_is_an_error(tiny_museum):
    for path in (tiny_museum / "references").rglob("*.jpg"):
        path.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="none of the 6"):
        _load(tiny_museum)


def test_distractor_record_is_refused(tiny_museum):
    museum = MuseumDataset.load(tiny_museum)
    with pytest.raises(ValueError, match="not one of"):
        load_labelled_images(museum.distractors, InstanceLabels.from_museum(museum))


def test_large_photos_are_shrunk_in_the_cache(tmp_path):
    write_image(tmp_path / "references" / "a" / "r.jpg", 1, size=(100, 300))
    write_image(tmp_path / "references" / "b" / "r.jpg", 2, size=(30, 40))
    images = _load(tmp_path, max_short_side=50)
    assert [im.shape[:2] for im in images.images] == [(50, 150), (30, 40)]


def test_epoch_order_is_a_seeded_permutation():
    a = epoch_order(10, seed=3, epoch=1)
    assert sorted(a) == list(range(10))
    assert a == epoch_order(10, seed=3, epoch=1)
    assert a != epoch_order(10, seed=3, epoch=2)
    with pytest.raises(ValueError, match="epoch"):
        epoch_order(10, seed=3, epoch=-1)


def test_classification_items_are_normalised_squares_and_deterministic(tiny_museum):
    images = _load(tiny_museum)
    ds = ClassificationDataset(images, CONTRACT, size=32, seed=5)
    x, y = ds[4]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == images.labels[4]
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    again = ClassificationDataset(images, CONTRACT, size=32, seed=5)
    torch.testing.assert_close(again[4][0], x, rtol=0, atol=0)
    ds.set_epoch(1)
    assert not torch.equal(ds[4][0], x)  # a new epoch draws new augmentations


def test_classification_without_augmentation_is_the_plain_photo(tiny_museum):
    images = _load(tiny_museum)
    ds = ClassificationDataset(images, CONTRACT, size=48, augment_config=None)
    x, _ = ds[0]
    torch.testing.assert_close(x, torch.from_numpy(prepare_square(images.images[0], CONTRACT, 48)[0]))
    ds.set_epoch(3)
    torch.testing.assert_close(ds[0][0], x, rtol=0, atol=0)


def test_fcn_items_keep_the_aspect_ratio_at_each_short_side(tiny_museum):
    images = _load(tiny_museum)
    ds = FCNDataset(images, CONTRACT, short_sides=(64, 32), augment_config=None)
    scales, label = ds[0]
    assert [tuple(s.shape) for s in scales] == [(3, 64, 85), (3, 32, 43)]
    assert label == images.labels[0]


def test_fcn_items_cap_the_aspect_ratio(tmp_path):
    write_image(tmp_path / "references" / "a" / "wide.png", 1, size=(20, 100))
    write_image(tmp_path / "references" / "b" / "tall.png", 2, size=(90, 30))
    images = _load(tmp_path)
    ds = FCNDataset(images, CONTRACT, short_sides=(32, 16), max_aspect=2.0, augment_config=AugmentConfig(), seed=0)
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            for s, side in zip(ds[i][0], (32, 16)):
                h, w = s.shape[1:]
                assert min(h, w) == side and max(h, w) <= 2 * side


def test_dataset_arguments_are_checked(tiny_museum):
    images = _load(tiny_museum)
    with pytest.raises(TypeError, match="LabelledImages"):
        ClassificationDataset([np.zeros((4, 4, 3), np.uint8)], CONTRACT)
    with pytest.raises(TypeError, match="PreprocessContract"):
        ClassificationDataset(images, {"mean": 0})
    with pytest.raises(ValueError, match="size"):
        ClassificationDataset(images, CONTRACT, size=0)
    with pytest.raises(ValueError, match="short_sides"):
        FCNDataset(images, CONTRACT, short_sides=())
    with pytest.raises(ValueError, match="max_aspect"):
        FCNDataset(images, CONTRACT, max_aspect=0.5)
    with pytest.raises(IndexError):
        ClassificationDataset(images, CONTRACT)[99]
    with pytest.raises(ValueError, match="max_short_side"):
        load_labelled_images([ImageRecord(Path("x.jpg"), "references", "a0")], images.instance_labels,
                             max_short_side=0)


def test_photo_views_are_labelled_and_the_same_in_every_process(tiny_museum):
    images = _load(tiny_museum)
    views = PhotoViews(images, [1, 4], 2, AugmentConfig(), seed=3)
    assert len(views) == 4 and views.labels == [images.labels[1]] * 2 + [images.labels[4]] * 2
    again = PhotoViews(images, [4], 2, AugmentConfig(), seed=3)
    np.testing.assert_array_equal(views[2], again[0])  # a function of (seed, photo, view) only
    assert not np.array_equal(views[2], views[3]) and len(list(views)) == 4
    with pytest.raises(IndexError):
        views[4]
    with pytest.raises(ValueError, match="views_per_photo"):
        PhotoViews(images, [0], 0, AugmentConfig(), seed=0)
    with pytest.raises(ValueError, match="photo indices"):
        PhotoViews(images, [6], 1, AugmentConfig(), seed=0)
    with pytest.raises(TypeError, match="AugmentConfig"):
        PhotoViews(images, [0], 1, None, seed=0)

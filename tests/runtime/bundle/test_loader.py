"""load_bundle: directory and archive round trips, model paths, temporary extraction lifetime."""

from __future__ import annotations

import gc
import tarfile
import tempfile
from pathlib import Path

import pytest

from muselens.runtime.bundle import BundleError, load_bundle, pack_bundle

from .conftest import bundle_kwargs, make_gallery, make_labels
from .helpers import flip_byte


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Route tempfile into a folder of our own, so leftovers can be counted."""
    root = tmp_path / "tmpdir"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _check_equal_to_written(bundle, tmp_path: Path) -> None:
    kwargs = bundle_kwargs(tmp_path)
    m = bundle.manifest
    assert (m.name, m.bundle_version, m.backbone, m.created) == (
        kwargs["name"], kwargs["bundle_version"], kwargs["backbone"], kwargs["created"])
    assert m.to_dict()["descriptor"] == kwargs["descriptor"]
    assert m.to_dict()["training"] == kwargs["training"]
    assert m.to_dict()["metrics"] == kwargs["metrics"]
    assert m.threshold.to_dict() == kwargs["threshold"]
    assert m.data_digest == kwargs["data_digest"]
    assert bundle.gallery == make_gallery()
    assert list(bundle.labels.values()) == sorted(make_labels(), key=lambda label: label.id)
    assert bundle.model_path().read_bytes() == (tmp_path / "src-fp32.onnx").read_bytes()
    assert bundle.model_path("fp16").read_bytes() == b"onnx-fp16-bytes"


def test_directory_round_trip(bundle_dir, tmp_path):
    bundle = load_bundle(bundle_dir)
    assert bundle.root == bundle_dir and bundle.name == "Test Museum"
    _check_equal_to_written(bundle, tmp_path)
    assert bundle.label("a2").title == "Guernica"
    assert "Test Museum" in repr(bundle) and "n_images=6" in repr(bundle)
    with pytest.raises(KeyError, match="no model variant 'int8'"):
        bundle.model_path("int8")
    with pytest.raises(KeyError, match="no label for instance 'zz'"):
        bundle.label("zz")
    bundle.close()  # nothing to remove for a directory
    assert bundle_dir.is_dir()


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar"])
def test_archive_round_trip_and_cleanup(bundle_dir, tmp_path, private_tmp, suffix):
    archive = pack_bundle(bundle_dir, tmp_path / f"museum{suffix}")
    with load_bundle(archive) as bundle:
        root = bundle.root
        assert root.is_relative_to(private_tmp) and root.is_dir()
        _check_equal_to_written(bundle, tmp_path)
        assert bundle.manifest == load_bundle(bundle_dir).manifest
    assert list(private_tmp.iterdir()) == []  # closed: extraction removed

    bundle = load_bundle(archive)
    del bundle
    gc.collect()
    assert list(private_tmp.iterdir()) == []  # garbage-collected: extraction removed


def test_archive_into_chosen_folder_is_kept(bundle_dir, tmp_path):
    archive = pack_bundle(bundle_dir, tmp_path / "museum.tar.gz")
    bundle = load_bundle(archive, extract_dir=tmp_path / "served")
    bundle.close()
    assert (tmp_path / "served" / "manifest.json").is_file()
    assert load_bundle(tmp_path / "served").gallery == make_gallery()
    with pytest.raises(BundleError, match="already exists"):
        load_bundle(archive, extract_dir=tmp_path / "served")
    assert (tmp_path / "served" / "manifest.json").is_file()  # an existing folder is never removed


def test_bad_archive_leaves_no_extraction(bundle_dir, tmp_path, private_tmp):
    flip_byte(bundle_dir / "labels.json", 5)
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        for path in sorted(bundle_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(bundle_dir).as_posix(), recursive=False)
    with pytest.raises(BundleError, match="labels.json: sha256 mismatch"):
        load_bundle(plain)
    assert list(private_tmp.iterdir()) == []
    with pytest.raises(BundleError, match="labels.json: sha256 mismatch"):
        load_bundle(plain, extract_dir=tmp_path / "served")
    assert not (tmp_path / "served").exists()


def test_missing_path(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope.tar.gz")

"""A written bundle that was tampered with, truncated or made inconsistent is refused by name."""

from __future__ import annotations

import io
import json
import os
import re

import numpy as np
import pytest

from muselens.runtime.bundle import BundleError, Gallery, LabelInfo, verify_bundle_dir
from muselens.runtime.bundle._json import canonical
from muselens.runtime.bundle.checksum import sha256_bytes, sha256_file
from muselens.runtime.bundle.gallery import NPZ_KEYS
from muselens.runtime.bundle.labels import labels_to_json

from .conftest import unit_rows
from .helpers import flip_byte, rewrite_consistently


def test_a_fresh_bundle_verifies(bundle_dir):
    contents = verify_bundle_dir(bundle_dir)
    assert contents.gallery.dim == contents.manifest.descriptor.dim == 8
    assert sorted(contents.labels) == ["a0", "a1", "a2"]


def test_tampered_model_names_file_and_both_digests(bundle_dir):
    path = bundle_dir / "models" / "fp32.onnx"
    expected, _ = sha256_file(path)
    flip_byte(path)
    actual, _ = sha256_file(path)
    with pytest.raises(BundleError, match=re.escape(
            f"models/fp32.onnx: sha256 mismatch: manifest expects {expected}, file has {actual}")):
        verify_bundle_dir(bundle_dir)


def test_truncated_model_is_a_size_mismatch(bundle_dir):
    path = bundle_dir / "models" / "fp16.onnx"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(BundleError, match="models/fp16.onnx: size mismatch: "
                                          "manifest expects 15 bytes, file has 12"):
        verify_bundle_dir(bundle_dir)


@pytest.mark.parametrize("rel", ["gallery.npz", "labels.json"])
def test_tampered_data_file(bundle_dir, rel):
    flip_byte(bundle_dir / rel, offset=len((bundle_dir / rel).read_bytes()) // 2)
    pattern = f"{re.escape(rel)}: sha256 mismatch: manifest expects [0-9a-f]{{64}}, file has [0-9a-f]{{64}}"
    with pytest.raises(BundleError, match=pattern):
        verify_bundle_dir(bundle_dir)


def test_tampered_manifest(bundle_dir):
    path = bundle_dir / "manifest.json"
    raw = json.loads(path.read_text())
    raw["threshold"]["value"] = 0.1  # e.g. someone lowering the threshold by hand
    path.write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="manifest.json checksum mismatch"):
        verify_bundle_dir(bundle_dir)


def test_wrong_format_version_names_found_and_supported(bundle_dir):
    path = bundle_dir / "manifest.json"
    raw = json.loads(path.read_text())
    del raw["manifest_sha256"]
    raw["format_version"] = 5
    path.write_text(json.dumps({**raw, "manifest_sha256": sha256_bytes(canonical(raw))}))
    with pytest.raises(BundleError, match="format_version 5 is not supported: "
                                          "this muselens reads format_version 1, 2, 3, 4"):
        verify_bundle_dir(bundle_dir)


@pytest.mark.parametrize("rel", ["manifest.json", "labels.json", "gallery.npz", "models/fp16.onnx"])
def test_missing_file(bundle_dir, rel):
    (bundle_dir / rel).unlink()
    with pytest.raises(BundleError, match=f"{re.escape(rel)}: is missing"):
        verify_bundle_dir(bundle_dir)


def test_extra_files_and_symlinks_are_refused(bundle_dir, tmp_path):
    (bundle_dir / "models" / "int8.onnx").write_bytes(b"unlisted")
    with pytest.raises(BundleError, match="models/int8.onnx: is an unexpected file"):
        verify_bundle_dir(bundle_dir)
    (bundle_dir / "models" / "int8.onnx").unlink()
    (bundle_dir / "notes").mkdir()
    with pytest.raises(BundleError, match="notes: is an unexpected folder"):
        verify_bundle_dir(bundle_dir)
    os.rmdir(bundle_dir / "notes")
    outside = tmp_path / "outside.onnx"
    model = bundle_dir / "models" / "fp16.onnx"
    outside.write_bytes(model.read_bytes())  # same bytes: only the link itself is wrong
    model.unlink()
    model.symlink_to(outside)
    with pytest.raises(BundleError, match="models/fp16.onnx: is a symlink"):
        verify_bundle_dir(bundle_dir)


def test_labels_not_covering_gallery(bundle_dir):
    labels = [LabelInfo("a0", "Mona"), LabelInfo("a2", "Guernica")]
    rewrite_consistently(bundle_dir, "labels.json", labels_to_json(labels))
    with pytest.raises(BundleError, match=r"labels.json: labels do not cover 1 gallery instance\(s\): 'a1'"):
        verify_bundle_dir(bundle_dir)


def test_gallery_dim_must_match_descriptor_contract(bundle_dir):
    ids = ["a0", "a1", "a2"]
    rewrite_consistently(bundle_dir, "gallery.npz", Gallery(unit_rows(3, dim=4), ids).to_bytes())
    with pytest.raises(BundleError, match="gallery.npz: descriptors have dimension 4 but the manifest's "
                                          "descriptor contract says dim=8"):
        verify_bundle_dir(bundle_dir)


def test_gallery_with_object_array_is_refused_even_with_right_checksum(bundle_dir):
    g = Gallery(unit_rows(3), ["a0", "a1", "a2"])
    arrays = {k: getattr(g, k) for k in NPZ_KEYS}
    arrays["average_ids"] = g.average_ids.astype(object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    rewrite_consistently(bundle_dir, "gallery.npz", buf.getvalue())
    with pytest.raises(BundleError, match="gallery.npz: .*cannot be read without unpickling"):
        verify_bundle_dir(bundle_dir)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="is not a directory"):
        verify_bundle_dir(tmp_path / "nothing")
    with pytest.raises(BundleError, match="manifest.json: is missing"):
        verify_bundle_dir(tmp_path)


def test_bad_content_with_right_checksums_names_the_file_once(bundle_dir):
    rewrite_consistently(bundle_dir, "labels.json", b'[{"id": "a0", "title": "", "metadata": {}}]')
    with pytest.raises(BundleError, match=r"bundle .*: labels.json: label title must be non-empty") as info:
        verify_bundle_dir(bundle_dir)
    assert str(info.value).count("labels.json") == 1
    buf = io.BytesIO()
    np.savez(buf, descriptors=unit_rows(2) * 3, instance_ids=np.array(["a0", "a1"]),
             average_descriptors=unit_rows(2), average_ids=np.array(["a0", "a1"]))
    rewrite_consistently(bundle_dir, "gallery.npz", buf.getvalue())
    with pytest.raises(BundleError,
                       match=r"bundle .*: gallery.npz: gallery descriptors must be L2-normalised"):
        verify_bundle_dir(bundle_dir)

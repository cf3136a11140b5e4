"""write_bundle: layout, validation before the disk is touched, and atomic replacement."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from muselens.runtime.bundle import BundleError, LabelInfo, load_bundle, write_bundle
from muselens.runtime.bundle import writer

from .conftest import bundle_kwargs, descriptor


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_layout_and_nothing_left_beside(tmp_path):
    out = write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path))
    assert out == tmp_path / "b"
    assert _files(out) == ["gallery.npz", "labels.json", "manifest.json", "models",
                           "models/fp16.onnx", "models/fp32.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "src-fp32.onnx"]
    assert (out / "models" / "fp32.onnx").read_bytes() == (tmp_path / "src-fp32.onnx").read_bytes()
    assert (out / "models" / "fp16.onnx").read_bytes() == b"onnx-fp16-bytes"


def test_creates_missing_parents_and_fills_an_empty_folder(tmp_path):
    write_bundle(tmp_path / "deep" / "er" / "b", **bundle_kwargs(tmp_path))
    (tmp_path / "empty").mkdir()
    write_bundle(tmp_path / "empty", **bundle_kwargs(tmp_path))
    assert load_bundle(tmp_path / "empty").bundle_version == "2026-11-23T15:00Z-abc123"


def test_replaces_an_existing_bundle(tmp_path):
    out = write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path))
    write_bundle(out, **bundle_kwargs(tmp_path, bundle_version="v2", model_files={"fp32": b"new"}))
    bundle = load_bundle(out)
    assert bundle.bundle_version == "v2" and sorted(bundle.manifest.models) == ["fp32"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "src-fp32.onnx"]  # no .old-*, no .tmp-*


@pytest.mark.parametrize("patch", ["write", "fsync"])
def test_failed_write_keeps_previous_bundle_and_leaves_no_temp(tmp_path, monkeypatch, patch):
    out = write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    if patch == "write":  # disk full midway: the models are written, labels.json is not
        real = writer._write_bytes

        def failing(path: Path, data: bytes) -> None:
            if path.name == "labels.json":
                _disk_full()
            real(path, data)

        monkeypatch.setattr(writer, "_write_bytes", failing)
    else:
        monkeypatch.setattr(writer.os, "fsync", _disk_full)
    with pytest.raises(BundleError, match=r"could not write bundle .*/b: \[Errno 28\] No space left"):
        write_bundle(out, **bundle_kwargs(tmp_path, bundle_version="v2"))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "src-fp32.onnx"]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert load_bundle(out).bundle_version == "2026-11-23T15:00Z-abc123"


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "_copy_model", _disk_full)
    with pytest.raises(BundleError, match="No space left"):
        write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src-fp32.onnx"]


def test_failed_swap_restores_previous_bundle(tmp_path, monkeypatch):
    out = write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path))
    real_rename = os.rename

    def rename(src, dst):  # moving the new bundle in fails; moving the old one aside works
        if Path(src).name.startswith(".b.tmp-"):
            raise OSError(errno.EIO, "I/O error")
        real_rename(src, dst)

    monkeypatch.setattr(writer.os, "rename", rename)
    with pytest.raises(BundleError, match="I/O error"):
        write_bundle(out, **bundle_kwargs(tmp_path, bundle_version="v2"))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "src-fp32.onnx"]
    assert load_bundle(out).bundle_version == "2026-11-23T15:00Z-abc123"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_unwritable_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(BundleError, match="could not write bundle .*Permission denied"):
            write_bundle(locked / "b", **bundle_kwargs(tmp_path))
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_unwritable_directory_simulated(tmp_path, monkeypatch):
    """The same path as above where tests run as root: creating the temporary sibling fails."""

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(writer.tempfile, "mkdtemp", denied)
    with pytest.raises(BundleError, match="could not write bundle .*Permission denied"):
        write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src-fp32.onnx"]


def test_refuses_to_replace_what_is_not_a_bundle(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("keep me")
    with pytest.raises(BundleError, match="is not empty and is not a muselens bundle"):
        write_bundle(tmp_path / "data", **bundle_kwargs(tmp_path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="exists and is not a directory"):
        write_bundle(tmp_path / "file", **bundle_kwargs(tmp_path))
    (tmp_path / "link").symlink_to(tmp_path / "data")
    with pytest.raises(BundleError, match="is a symlink"):
        write_bundle(tmp_path / "link", **bundle_kwargs(tmp_path))
    assert (tmp_path / "data" / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("overrides, error, match", [
    ({"labels": [LabelInfo("a0", "Mona")]}, ValueError, r"do not cover 2 gallery instance\(s\)"),
    ({"descriptor": descriptor(dim=16)}, ValueError,
     "descriptor dim 16 does not match the gallery's dimension 8"),
    ({"default_variant": None}, ValueError, "default_variant is required with several models"),
    ({"model_files": {}}, ValueError, "at least one variant"),
    ({"model_files": {"fast": b"x"}}, ValueError, "does not name a precision"),
    ({"model_files": {"fp32": b""}}, ValueError, "model 'fp32' is empty"),
    ({"model_files": {"fp32": "/no/such/file.onnx"}}, ValueError, "model file for 'fp32' not found"),
    ({"model_files": {"fp32": 3}}, TypeError, "must be a path or bytes"),
    ({"gallery": "not a gallery"}, TypeError, "gallery must be a Gallery"),
    ({"threshold": {"value": 2.0, "target_far": 0.1, "n_distractors": 1, "calibrated": True}},
     ValueError, "threshold.value"),
    ({"data_digest": "0"}, ValueError, "data_digest"),
])
def test_input_errors_touch_nothing(tmp_path, overrides, error, match):
    with pytest.raises(error, match=match):
        write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path, **overrides))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src-fp32.onnx"]


def test_single_model_defaults_and_explicit_precisions(tmp_path):
    kwargs = bundle_kwargs(tmp_path, model_files={"mobile": b"m"}, default_variant=None,
                           precisions={"mobile": "int8"}, metrics={}, created=None, muselens_version=None)
    bundle = load_bundle(write_bundle(tmp_path / "b", **kwargs))
    assert bundle.manifest.default_variant == "mobile"
    assert bundle.manifest.models["mobile"].precision == "int8"
    assert bundle.manifest.created.endswith("Z") and bundle.manifest.muselens_version
    with pytest.raises(ValueError, match="precisions lacks model variant 'fp16'"):
        write_bundle(tmp_path / "c", **bundle_kwargs(tmp_path, precisions={"fp32": "fp32"}))


def test_model_changing_during_copy_is_caught(tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(b"abc")
    (tmp_path / "dst").mkdir()
    with pytest.raises(BundleError, match="changed while it was being copied"):
        writer._copy_model(src, tmp_path / "dst" / "m.onnx", "0" * 64)


def test_bundle_and_archive_are_readable_by_other_users(tmp_path):
    import stat

    from muselens.runtime.bundle import pack_bundle

    bundle = write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path))
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o755
    archive = pack_bundle(bundle, tmp_path / "b.tar.gz")
    assert stat.S_IMODE(archive.stat().st_mode) == 0o644

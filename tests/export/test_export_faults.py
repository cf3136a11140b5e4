"""Export under faults: an unwritable folder, a disk that fills up mid-way.

Each must fail cleanly: exit 2 from the command with a message naming the problem, nothing at
the target the runtime would load, no temporary folders left behind, and a good bundle that was
already there intact and still loading.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
from pathlib import Path

import pytest

import muselens.runtime.bundle.writer as writer
from muselens.export import export_command as command
from muselens.runtime.bundle import BundleError, load_bundle

FAST = ["--precision", "fp32", "--latency-runs", "0", "--bundle-version", "9.9.9"]


def _export(run_dir: Path, out: Path) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.main(parser.parse_args([str(run_dir), "--out", str(out), *FAST]))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _snapshot(bundle: Path) -> dict[str, bytes]:
    return {str(p.relative_to(bundle)): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}


@pytest.fixture
def previous(tiny_bundle, tmp_path) -> Path:
    """A good bundle already at the target."""
    target = tmp_path / "out" / "museum"
    shutil.copytree(tiny_bundle, target)
    return target


def test_an_unwritable_output_folder_fails_cleanly(run_dir, tmp_path, monkeypatch, capsys):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    if os.access(parent, os.W_OK):  # root ignores the mode: refuse creation there as the kernel would
        real_mkdir = os.mkdir

        def mkdir(path, mode=0o777, *args, **kwargs):
            if Path(path).parent == parent:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_mkdir(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", mkdir)
    try:
        assert _export(run_dir, parent / "museum") == 2
        err = capsys.readouterr().err
        assert "Permission denied" in err and str(parent) in err and "Traceback" not in err
        assert not (parent / "museum").exists() and _leftovers(parent) == []
    finally:
        parent.chmod(0o755)


def test_an_output_path_below_a_file_fails_cleanly(run_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert _export(run_dir, blocker / "museum") == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


@pytest.mark.slow  # a full export each (~5 s on 2 cores)
@pytest.mark.parametrize("failing", ["gallery", "model"])
def test_a_full_disk_mid_write_keeps_the_previous_bundle(run_dir, previous, monkeypatch, capsys, failing):
    before = _snapshot(previous)
    if failing == "gallery":  # the model is copied, then the next write finds the disk full
        real = writer._write_bytes

        def write_bytes(path: Path, data: bytes) -> None:
            if path.name == "gallery.npz":
                with open(path, "xb") as f:
                    f.write(data[:len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            real(path, data)

        monkeypatch.setattr(writer, "_write_bytes", write_bytes)
    else:  # the model copy itself runs out of space half-way

        def copy_model(src: Path, dst: Path, expected: str) -> None:
            dst.write_bytes(src.read_bytes()[:1000])
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))

        monkeypatch.setattr(writer, "_copy_model", copy_model)
    assert _export(run_dir, previous) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(previous) in err and "Traceback" not in err
    assert _snapshot(previous) == before
    assert load_bundle(previous).bundle_version == "1.0.0"
    assert _leftovers(previous.parent) == []


@pytest.mark.slow
def test_a_full_disk_with_no_previous_bundle_leaves_nothing_loadable(run_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "fresh" / "museum"
    real = writer._write_bytes

    def write_bytes(path: Path, data: bytes) -> None:
        if path.name == "manifest.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(writer, "_write_bytes", write_bytes)
    assert _export(run_dir, out) == 2
    assert "No space left on device" in capsys.readouterr().err
    with pytest.raises(BundleError):
        load_bundle(out)
    assert not out.exists() and _leftovers(out.parent) == []

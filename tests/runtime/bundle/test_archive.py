"""pack_bundle / unpack_bundle: reproducible archives, and hostile archives refused before extraction."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from muselens.runtime.bundle import BundleError, load_bundle, pack_bundle, unpack_bundle
from muselens.runtime.bundle import archive as archive_module

from .helpers import flip_byte


def _make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


def test_pack_is_flat_and_reproducible(bundle_dir, tmp_path):
    a = pack_bundle(bundle_dir, tmp_path / "one.tar.gz")
    b = pack_bundle(bundle_dir, tmp_path / "two.tar.gz")
    assert a.read_bytes() == b.read_bytes()
    assert _names(a) == ["manifest.json", "gallery.npz", "labels.json", "models/fp16.onnx",
                         "models/fp32.onnx"]
    with tarfile.open(a) as tar:
        assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o644 for m in tar)
    assert a.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    plain = pack_bundle(bundle_dir, tmp_path / "three.tar")
    assert plain.read_bytes()[257:262] == b"ustar"  # uncompressed tar
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_pack_refuses_bad_bundle_or_name(bundle_dir, tmp_path):
    with pytest.raises(ValueError, match="must end in one of"):
        pack_bundle(bundle_dir, tmp_path / "museum.zip")
    flip_byte(bundle_dir / "gallery.npz", 100)
    with pytest.raises(BundleError, match="gallery.npz: sha256 mismatch"):
        pack_bundle(bundle_dir, tmp_path / "museum.tar.gz")
    assert not (tmp_path / "museum.tar.gz").exists()


def test_unpack_round_trip_and_existing_target(bundle_dir, tmp_path):
    archive = pack_bundle(bundle_dir, tmp_path / "m.tgz")
    out = unpack_bundle(archive, tmp_path / "x" / "unpacked")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(
        p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*"))
    assert load_bundle(out).manifest == load_bundle(bundle_dir).manifest
    with pytest.raises(BundleError, match="already exists"):
        unpack_bundle(archive, out)


def test_archive_made_by_tar_cli_style_is_accepted(bundle_dir, tmp_path):
    """`tar -C BUNDLE -czf x.tar.gz .` writes a '.' folder and './' prefixes."""
    archive = tmp_path / "cli.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle_dir, arcname=".")
    assert "./manifest.json" in _names(archive)
    assert load_bundle(archive).gallery == load_bundle(bundle_dir).gallery


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar"])
def test_truncated_archive(bundle_dir, tmp_path, suffix):
    archive = pack_bundle(bundle_dir, tmp_path / f"m{suffix}")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated, corrupt or not a tar archive"):
        unpack_bundle(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bundle", archive.name, "src-fp32.onnx"])


def test_not_an_archive(tmp_path):
    (tmp_path / "m.tar.gz").write_bytes(b"hello, not a tar")
    with pytest.raises(BundleError, match="truncated, corrupt or not a tar archive"):
        unpack_bundle(tmp_path / "m.tar.gz", tmp_path / "out")
    with pytest.raises(BundleError, match="does not exist"):
        unpack_bundle(tmp_path / "missing.tar.gz", tmp_path / "out")


MALICIOUS = {
    "absolute path": ([_file("/tmp/muselens-evil-abs")], "is absolute"),
    "dot-dot escape": ([_file("manifest.json"), _file("models/../../evil.txt")], "'..' component"),
    "backslash": ([_file("..\\evil.txt")], "backslash"),
    "symlink out": ([_special("models/fp32.onnx", tarfile.SYMTYPE, "/etc/passwd")], "is a symlink"),
    "relative symlink out": ([_special("escape", tarfile.SYMTYPE, "../../.."),
                              _file("escape/evil.txt")], "is a symlink"),
    "hardlink": ([_special("models/fp32.onnx", tarfile.LNKTYPE, "/etc/passwd")], "is a hardlink"),
    "char device": ([_special("dev", tarfile.CHRTYPE)], "is a device file"),
    "block device": ([_special("dev", tarfile.BLKTYPE)], "is a device file"),
    "fifo": ([_special("pipe", tarfile.FIFOTYPE)], "is a FIFO"),
    "duplicate name": ([_file("labels.json", b"a"), _file("./labels.json", b"b")], "appears twice"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_archives_are_refused(tmp_path, case):
    members, match = MALICIOUS[case]
    archive = _make_tar(tmp_path / "evil.tar.gz", members)
    target = tmp_path / "area" / "out"
    with pytest.raises(BundleError, match=match):
        unpack_bundle(archive, target)
    assert not target.exists()
    assert list((tmp_path / "area").iterdir()) == []  # no temporary folder left either
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/muselens-evil-abs").exists()


def test_size_and_member_limits(tmp_path):
    archive = _make_tar(tmp_path / "big.tar", [_file("a", b"x" * 600), _file("b", b"y" * 600)])
    with pytest.raises(BundleError, match="unpacks to more than 1000 bytes"):
        unpack_bundle(archive, tmp_path / "out", max_total_bytes=1000)
    many = _make_tar(tmp_path / "many.tar", [_file(f"f{i}") for i in range(5)])
    with pytest.raises(BundleError, match="more than 4 members"):
        unpack_bundle(many, tmp_path / "out", max_members=4)
    assert unpack_bundle(archive, tmp_path / "out", max_total_bytes=1200).is_dir()


def test_data_filter_is_a_second_line_of_defence(tmp_path, monkeypatch):
    """With our own checks switched off, tarfile's 'data' filter still refuses a symlink out."""
    monkeypatch.setattr(archive_module, "_checked_members", lambda tar, *args: tar.getmembers())
    archive = _make_tar(tmp_path / "evil.tar", [_special("link", tarfile.SYMTYPE, "/etc/passwd")])
    with pytest.raises(BundleError, match="refused by tarfile's data filter"):
        unpack_bundle(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()

"""SHA-256 helpers and the training-data digest, against hashlib by hand."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from muselens.runtime.bundle.checksum import dataset_digest, is_sha256, sha256_bytes, sha256_file


def _tree(root: Path) -> Path:
    (root / "references" / "a0").mkdir(parents=True)
    (root / "references" / "a0" / "r0.jpg").write_bytes(b"pixels-0")
    (root / "instances.csv").write_bytes(b"id,title\na0,Mona\n")
    return root


def test_sha256_of_bytes_and_file(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert sha256_bytes(data) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == (hashlib.sha256(data).hexdigest(), len(data))


def test_is_sha256():
    assert is_sha256("0" * 64)
    assert not is_sha256("A" * 64)  # one spelling only: lowercase
    assert not is_sha256("0" * 63)
    assert not is_sha256(None)


def test_dataset_digest_matches_hand_computation(tmp_path):
    root = _tree(tmp_path / "museum")
    pairs = sorted([
        (b"instances.csv", hashlib.sha256(b"id,title\na0,Mona\n").hexdigest()),
        (b"references/a0/r0.jpg", hashlib.sha256(b"pixels-0").hexdigest()),
    ])
    h = hashlib.sha256()
    for rel, digest in pairs:
        h.update(rel + b"\0" + digest.encode() + b"\n")
    assert dataset_digest(root) == h.hexdigest()


def test_dataset_digest_depends_on_content_and_names_not_location(tmp_path):
    root = _tree(tmp_path / "museum")
    base = dataset_digest(root)
    moved = shutil.copytree(root, tmp_path / "elsewhere" / "copy")
    os.utime(moved / "instances.csv", (0, 0))
    assert dataset_digest(moved) == base
    (moved / ".DS_Store").write_bytes(b"junk")  # hidden files are not part of a museum
    assert dataset_digest(moved) == base
    (moved / "references" / "a0" / "r0.jpg").write_bytes(b"pixels-1")
    assert dataset_digest(moved) != base
    (moved / "references" / "a0" / "r0.jpg").write_bytes(b"pixels-0")
    assert dataset_digest(moved) == base
    (moved / "references" / "a0" / "r0.jpg").rename(moved / "references" / "a0" / "r1.jpg")
    assert dataset_digest(moved) != base


def test_dataset_digest_refuses(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        dataset_digest(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        dataset_digest(tmp_path / "empty")
    root = _tree(tmp_path / "museum")
    (root / "references" / "loop").symlink_to(root, target_is_directory=True)
    with pytest.raises(ValueError, match="symlink loop"):
        dataset_digest(root)

"""SHA-256 of files, bytes and whole training datasets.

A bundle records the digest of every file it holds and of the data it was trained on, so a
deployed bundle can be traced to its inputs and a corrupted copy is caught before it serves.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_sha256(value: object) -> bool:
    """True for a lowercase 64-hex-digit string (the only spelling bundles use)."""
    return isinstance(value, str) and _SHA256.match(value) is not None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> tuple[str, int]:
    """``(hex digest, size in bytes)`` of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def dataset_digest(root: Path | str) -> str:
    """SHA-256 over the sorted ``(relative path, file sha256)`` pairs of every file under ``root``.

    Identifies the training museum independently of where it lies and of file times. Hidden
    entries (names starting with ``.``, e.g. ``.DS_Store``) are not part of a museum and are
    skipped, as the dataset loader skips them. Symlinked files and folders are followed, as the
    loader follows them; a symlink loop is an error. Each pair is fed as
    ``path \\0 sha256 \\n`` with the path in POSIX form, UTF-8 encoded.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset_digest: {root} is not a directory")
    pairs: list[tuple[bytes, str]] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            raise ValueError(f"dataset_digest: symlink loop at {dirpath} (already visited {real})")
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if filename.startswith("."):
                continue
            path = Path(dirpath) / filename
            rel = path.relative_to(root).as_posix().encode("utf-8", "surrogateescape")
            pairs.append((rel, sha256_file(path)[0]))
    if not pairs:
        raise ValueError(f"dataset_digest: {root} holds no files")
    h = hashlib.sha256()
    for rel, digest in sorted(pairs):
        h.update(rel + b"\0" + digest.encode("ascii") + b"\n")
    return h.hexdigest()

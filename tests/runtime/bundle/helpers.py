"""Editing a written bundle in tests: corrupt a file, or rewrite it consistently (checksums fixed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from muselens.runtime.bundle.checksum import sha256_bytes
from muselens.runtime.bundle.manifest import Manifest, ModelEntry
from muselens.runtime.bundle.verify import read_manifest


def flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def rewrite_consistently(root: Path, rel: str, data: bytes) -> None:
    """Replace ``rel`` and update the manifest (and its self-checksum) to match it.

    Simulates a bundle whose checksums are all right but whose content is wrong, so the
    checks after the checksums are exercised.
    """
    manifest = read_manifest(root)
    (root / rel).write_bytes(data)
    if rel in manifest.files:
        manifest = dataclasses.replace(manifest, files={**manifest.files, rel: sha256_bytes(data)})
    else:
        variant = next(v for v, e in manifest.models.items() if e.file == rel)
        entry = ModelEntry(rel, sha256_bytes(data), len(data), manifest.models[variant].precision)
        manifest = dataclasses.replace(manifest, models={**manifest.models, variant: entry})
    write_manifest(root, manifest)


def write_manifest(root: Path, manifest: Manifest) -> None:
    (root / "manifest.json").write_bytes(manifest.to_json())

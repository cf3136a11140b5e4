"""Every check a bundle directory must pass before anything in it is used.

Order: the manifest (format and version, self-checksum, fields), then the directory holds
exactly the files the manifest names (no symlinks, nothing missing, nothing extra), then each
file's size and SHA-256, and only then the gallery and labels are parsed and cross-checked
(dimension against the descriptor contract, labels covering every gallery instance). Errors
are :class:`BundleError` naming the bundle, the file and what is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from muselens.runtime.bundle.checksum import sha256_bytes, sha256_file
from muselens.runtime.bundle.bundle_error import BundleError
from muselens.runtime.bundle.gallery import Gallery
from muselens.runtime.bundle.labels import LabelInfo, check_coverage, labels_from_json
from muselens.runtime.bundle.manifest import (
    GALLERY_FILE,
    LABELS_FILE,
    LOCAL_FEATURES_FILE,
    MANIFEST_FILE,
    REFERENCE_PHOTO,
    VOTE_INDEX_FILE,
    Manifest,
)
from muselens.runtime.verification import LocalFeatureStore

MAX_MANIFEST_BYTES = 16 << 20


@dataclass(frozen=True)
class BundleContents:
    """What a verified bundle directory holds (models stay on disk; only their paths are needed)."""

    manifest: Manifest
    gallery: Gallery
    labels: dict[str, LabelInfo]
    local_features: LocalFeatureStore | None = None  # one block per gallery row, when the bundle has them


def _fail(root: Path, rel: str, problem: str) -> BundleError:
    return BundleError(f"bundle {root}: {rel}: {problem}")


def _regular_file(root: Path, rel: str) -> Path:
    path = root / rel
    if path.is_symlink():
        raise _fail(root, rel, "is a symlink; bundle files must be regular files")
    if not path.exists():
        raise _fail(root, rel, "is missing")
    if not path.is_file():
        raise _fail(root, rel, "is not a regular file")
    return path


def read_manifest(root: Path | str) -> Manifest:
    """The validated manifest of a bundle directory (no other file is read)."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"bundle {root} is not a directory")
    path = _regular_file(root, MANIFEST_FILE)
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise _fail(root, MANIFEST_FILE, f"is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        return Manifest.from_json(path.read_bytes(), MANIFEST_FILE)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"bundle {root}: {exc}") from exc


def _check_tree(root: Path, expected: set[str]) -> None:
    """The directory holds exactly ``expected`` (plus the folders leading to them)."""
    folders = {str(Path(rel).parent.as_posix()) for rel in expected} - {"."}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in dirnames + filenames:
            rel = (here / name).relative_to(root).as_posix()
            entry = here / name
            if entry.is_symlink():
                raise _fail(root, rel, "is a symlink; bundles hold only regular files")
            if name in dirnames and rel not in folders:
                raise _fail(root, rel, "is an unexpected folder (not named by the manifest)")
            if name in filenames and rel not in expected:
                raise _fail(root, rel, "is an unexpected file (not named by the manifest)")
    for rel in sorted(expected):
        _regular_file(root, rel)


def _mismatch(root: Path, rel: str, expected: str, actual: str) -> BundleError:
    return _fail(root, rel, f"sha256 mismatch: manifest expects {expected}, file has {actual} "
                            "(the file was modified or corrupted)")


def _check_model(root: Path, rel: str, expected: str, size: int) -> None:
    """Size first (cheap, catches truncation), then the streamed SHA-256."""
    actual_size = (root / rel).stat().st_size
    if actual_size != size:
        raise _fail(root, rel, f"size mismatch: manifest expects {size} bytes, file has "
                               f"{actual_size} (truncated or replaced)")
    actual, _ = sha256_file(root / rel)
    if actual != expected:
        raise _mismatch(root, rel, expected, actual)


def _read_checked(root: Path, rel: str, expected: str) -> bytes:
    """The file's bytes, read once, so what is hashed is what is parsed."""
    data = (root / rel).read_bytes()
    actual = sha256_bytes(data)
    if actual != expected:
        raise _mismatch(root, rel, expected, actual)
    return data


def verify_bundle_dir(root: Path | str) -> BundleContents:
    """Check a bundle directory completely and return its manifest, gallery and labels."""
    root = Path(root)
    manifest = read_manifest(root)
    models = {entry.file: entry for entry in manifest.models.values()}
    _check_tree(root, {MANIFEST_FILE, *manifest.files, *models})
    for rel, entry in models.items():
        _check_model(root, rel, entry.sha256, entry.bytes)
    # the vote index (hundreds of MB for a large museum) is hashed as it streams past, not held:
    # the served model reads it once, with Bundle.read_vote_index
    data = {rel: _read_checked(root, rel, digest) for rel, digest in manifest.files.items() if rel != VOTE_INDEX_FILE}
    if VOTE_INDEX_FILE in manifest.files:
        actual, _ = sha256_file(root / VOTE_INDEX_FILE)
        if actual != manifest.files[VOTE_INDEX_FILE]:
            raise _mismatch(root, VOTE_INDEX_FILE, manifest.files[VOTE_INDEX_FILE], actual)
    try:  # parse errors already start with the file's name
        gallery = Gallery.from_bytes(data[GALLERY_FILE], GALLERY_FILE)
        labels = labels_from_json(data[LABELS_FILE], LABELS_FILE)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"bundle {root}: {exc}") from exc
    dim = manifest.descriptor.dim
    if gallery.dim != dim:
        raise _fail(root, GALLERY_FILE, f"descriptors have dimension {gallery.dim} but the "
                                        f"manifest's descriptor contract says dim={dim}")
    for rel in manifest.files:
        match = REFERENCE_PHOTO.fullmatch(rel)
        if match and int(match.group(1)) >= gallery.n_images:
            raise _fail(root, rel, f"is the photo of row {int(match.group(1))}, but the gallery has "
                                   f"{gallery.n_images} images")
    try:
        check_coverage(labels, gallery.average_ids.tolist())
    except (ValueError, TypeError) as exc:
        raise _fail(root, LABELS_FILE, str(exc)) from exc
    return BundleContents(manifest, gallery, labels, _local_features(root, manifest, data, gallery.n_images))


def _local_features(root: Path, manifest: Manifest, data: dict[str, bytes], n_images: int) -> LocalFeatureStore | None:
    if manifest.local_features is None:
        return None
    try:
        store = LocalFeatureStore.from_bytes(data[LOCAL_FEATURES_FILE], LOCAL_FEATURES_FILE)
    except ValueError as exc:
        raise BundleError(f"bundle {root}: {exc}") from exc
    if len(store) != n_images:
        raise _fail(root, LOCAL_FEATURES_FILE, f"holds the features of {len(store)} references, but the "
                                               f"gallery has {n_images} images")
    width = 32 if manifest.local_features.kind == "orb" else 128
    if len(store.descriptors) and store.width != width:
        raise _fail(root, LOCAL_FEATURES_FILE, f"descriptors are {store.width} bytes wide; the manifest's "
                                               f"{manifest.local_features.kind} features are {width}")
    return store

"""Writing a bundle atomically: complete and checked in a temporary sibling, then renamed in.

A reader never sees a half-written bundle at ``out_dir``: files are written (manifest last)
and fsynced in ``.<name>.tmp-*`` beside it, the result is verified exactly as the runtime
will verify it, and only then renamed into place. An existing bundle is first renamed aside,
and restored if the new one cannot take its place; it is deleted only once the new one is in.
(POSIX cannot swap two directories in one step, so for the instant between the two renames
``out_dir`` does not exist; it is never half-written.) Any failure removes the temporary
directory and raises :class:`BundleError` (input mistakes raise ValueError/TypeError first,
before anything touches the disk).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import muselens
from muselens.core import checks
from muselens.core.descriptor_contract import DescriptorContract
from muselens.runtime.bundle.checksum import CHUNK, sha256_bytes, sha256_file
from muselens.runtime.bundle.bundle_error import BundleError
from muselens.runtime.bundle.gallery import Gallery
from muselens.runtime.bundle.labels import LabelInfo, check_coverage, index_labels, labels_to_json
from muselens.runtime.bundle.manifest import (
    GALLERY_FILE,
    LABELS_FILE,
    LOCAL_FEATURES_FILE,
    MANIFEST_FILE,
    VOTE_INDEX_FILE,
    Manifest,
    ModelEntry,
    Threshold,
    model_file,
    reference_file,
    utc_now,
)
from muselens.runtime.bundle.verify import verify_bundle_dir
from muselens.runtime.verification import FeatureConfig, LocalFeatureStore

# Variant names that say their own precision; any other name needs an explicit ``precisions``.
KNOWN_PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    """Write and fsync one file (the single place bundle bytes reach the disk)."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _copy_model(src: Path, dst: Path, expected: str) -> None:
    """Stream ``src`` to ``dst``, hashing the copy: a source changed since it was hashed is caught."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    if h.hexdigest() != expected:
        raise BundleError(f"model {src} changed while it was being copied into the bundle "
                          f"(sha256 {expected} before, {h.hexdigest()} during the copy)")


def _model_sources(model_files: Mapping[str, Path | str | bytes],
                   precisions: Mapping[str, str] | None) -> dict[str, tuple[Path | bytes, ModelEntry]]:
    if not isinstance(model_files, Mapping) or not model_files:
        raise ValueError("model_files must map at least one variant (e.g. 'fp32') to a file or bytes")
    out = {}
    for variant, source in model_files.items():
        if precisions is not None:
            if variant not in precisions:
                raise ValueError(f"precisions lacks model variant {variant!r}")
            precision = precisions[variant]
        elif variant in KNOWN_PRECISIONS:
            precision = variant
        else:
            raise ValueError(f"model variant {variant!r} does not name a precision "
                             f"{KNOWN_PRECISIONS}; pass precisions={{{variant!r}: ...}}")
        if isinstance(source, (bytes, bytearray)):
            if not source:
                raise ValueError(f"model {variant!r} is empty")
            data = bytes(source)
            digest, size = sha256_bytes(data), len(data)
            kept: Path | bytes = data
        elif isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise ValueError(f"model file for {variant!r} not found: {path}")
            digest, size = sha256_file(path)
            if size == 0:
                raise ValueError(f"model file for {variant!r} is empty: {path}")
            kept = path
        else:
            raise TypeError(f"model_files[{variant!r}] must be a path or bytes, "
                            f"got {type(source).__name__}")
        out[variant] = (kept, ModelEntry(model_file(variant), digest, size, precision))
    return out


def _check_photos(photos: Mapping[int, bytes] | None, n_images: int) -> dict[str, bytes]:
    if photos is None:
        return {}
    if not isinstance(photos, Mapping):
        raise TypeError(f"reference_photos must map gallery rows to JPEG bytes, got {type(photos).__name__}")
    out = {}
    for row, data in sorted(photos.items()):
        if not checks.is_integer(row) or not 0 <= row < n_images:
            raise ValueError(f"reference photo row {row!r} is not a gallery row (0..{n_images - 1})")
        if not isinstance(data, (bytes, bytearray)) or not bytes(data[:3]) == b"\xff\xd8\xff":
            raise ValueError(f"reference photo of row {row} must be JPEG bytes")
        out[reference_file(row)] = bytes(data)
    return out


def _check_local_features(local_features: object, n_images: int) -> tuple[FeatureConfig, LocalFeatureStore]:
    if not (isinstance(local_features, tuple) and len(local_features) == 2
            and isinstance(local_features[0], FeatureConfig) and isinstance(local_features[1], LocalFeatureStore)):
        raise TypeError("local_features must be a (FeatureConfig, LocalFeatureStore) pair")
    config, store = local_features
    if len(store) != n_images:
        raise ValueError(f"local features hold {len(store)} references but the gallery has {n_images} images")
    expected = 32 if config.kind == "orb" else 128
    if len(store.descriptors) and store.width != expected:
        raise ValueError(f"{config.kind} descriptors are {expected} bytes wide, the store's are {store.width}")
    return config, store


def _check_target(out: Path) -> None:
    """Refuse to replace anything but a bundle (or an empty folder): never delete user data."""
    if out.is_symlink():
        raise BundleError(f"{out} is a symlink; write the bundle to a real path")
    if not out.exists():
        return
    if not out.is_dir():
        raise BundleError(f"{out} exists and is not a directory; refusing to replace it")
    if not (out / MANIFEST_FILE).is_file() and any(out.iterdir()):
        raise BundleError(f"{out} exists, is not empty and is not a muselens bundle "
                          f"(no {MANIFEST_FILE}); refusing to replace it")


def _move_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        _fsync_dir(out.parent)
        return
    backup = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(out, backup)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(backup, out)
        raise
    _fsync_dir(out.parent)
    try:
        shutil.rmtree(backup)
    except OSError as exc:
        raise BundleError(f"the new bundle is in place at {out}, but the previous copy could not be "
                          f"removed from {backup}: {exc}") from exc


def write_bundle(
    out_dir: Path | str,
    *,
    name: str,
    bundle_version: str,
    backbone: str,
    descriptor: DescriptorContract | Mapping[str, Any],
    model_files: Mapping[str, Path | str | bytes],
    gallery: Gallery,
    labels: Iterable[LabelInfo],
    training: Mapping[str, Any],
    data_digest: str,
    metrics: Mapping[str, Mapping[str, float]],
    threshold: Threshold | Mapping[str, Any],
    default_variant: str | None = None,
    precisions: Mapping[str, str] | None = None,
    created: str | None = None,
    muselens_version: str | None = None,
    reference_photos: Mapping[int, bytes] | None = None,
    local_features: tuple[FeatureConfig, LocalFeatureStore] | None = None,
    verification: Mapping[str, Any] | None = None,
    vote_index: bytes | None = None,
) -> Path:
    """Write a complete, verified bundle to ``out_dir`` atomically and return its path.

    ``model_files`` maps each variant (``fp32``, ``fp16``, ``int8``...) to an ONNX file or its
    bytes; the precision is the variant name unless ``precisions`` says otherwise.
    ``default_variant`` may be omitted when there is a single model. ``created`` defaults to
    now (UTC) and ``muselens_version`` to the installed version. ``reference_photos`` maps
    gallery rows to JPEG bytes of their photos (optional; see :func:`reference_file`).
    ``local_features`` is the config and the store of every gallery row's local features, in
    gallery row order (optional; it lets the runtime verify a match geometrically), and
    ``verification`` how a fit weighs against the descriptor (``{"evidence_weight": ...}``), and
    ``vote_index`` the local features' vote index, built (``LocalVoter.to_bytes``), so that loading
    the bundle does not build it again.
    """
    out = Path(out_dir)
    if not isinstance(gallery, Gallery):
        raise TypeError(f"gallery must be a Gallery, got {type(gallery).__name__}")
    indexed = index_labels(labels)
    check_coverage(indexed, gallery.average_ids.tolist())
    sources = _model_sources(model_files, precisions)
    if default_variant is None:
        if len(sources) != 1:
            raise ValueError(f"default_variant is required with several models {sorted(sources)}")
        default_variant = next(iter(sources))
    gallery_bytes, labels_bytes = gallery.to_bytes(), labels_to_json(indexed.values())
    photos = _check_photos(reference_photos, gallery.n_images)
    extra = dict(photos)
    feature_config = None
    if local_features is not None:
        feature_config, store = _check_local_features(local_features, gallery.n_images)
        extra[LOCAL_FEATURES_FILE] = store.to_bytes()
    if vote_index is not None:
        if local_features is None:
            raise ValueError("vote_index indexes local features: give local_features too")
        if not isinstance(vote_index, bytes) or not vote_index:
            raise TypeError("vote_index must be the non-empty bytes of LocalVoter.to_bytes()")
        extra[VOTE_INDEX_FILE] = vote_index
    manifest = Manifest(
        name=name, bundle_version=bundle_version, backbone=backbone, descriptor=descriptor,
        models={v: entry for v, (_, entry) in sources.items()}, default_variant=default_variant,
        files={GALLERY_FILE: sha256_bytes(gallery_bytes), LABELS_FILE: sha256_bytes(labels_bytes),
               **{rel: sha256_bytes(data) for rel, data in extra.items()}},
        training=training, data_digest=data_digest, metrics=metrics, threshold=threshold,
        created=utc_now() if created is None else created,
        muselens_version=muselens.__version__ if muselens_version is None else muselens_version,
        local_features=feature_config, verification=verification,
    )
    if manifest.descriptor.dim != gallery.dim:
        raise ValueError(f"descriptor dim {manifest.descriptor.dim} does not match the gallery's "
                         f"dimension {gallery.dim}")
    _check_target(out)

    tmp: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is read by the service's user too
        (tmp / "models").mkdir()
        for source, entry in sources.values():
            if isinstance(source, bytes):
                _write_bytes(tmp / entry.file, source)
            else:
                _copy_model(source, tmp / entry.file, entry.sha256)
        _fsync_dir(tmp / "models")
        _write_bytes(tmp / GALLERY_FILE, gallery_bytes)
        _write_bytes(tmp / LABELS_FILE, labels_bytes)
        if photos:
            (tmp / "references").mkdir()
            for rel, data in photos.items():
                _write_bytes(tmp / rel, data)
            _fsync_dir(tmp / "references")
        for rel in (LOCAL_FEATURES_FILE, VOTE_INDEX_FILE):
            if rel in extra:
                _write_bytes(tmp / rel, extra[rel])
        _write_bytes(tmp / MANIFEST_FILE, manifest.to_json())  # last: its presence means complete
        _fsync_dir(tmp)
        verify_bundle_dir(tmp)
        _move_into_place(tmp, out)
        tmp = None
    except OSError as exc:
        raise BundleError(f"could not write bundle {out}: {exc}") from exc
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp)
    return out

"""The versioned per-museum bundle: what export writes and the runtime loads (numpy + stdlib).

A bundle is one directory (or one ``.tar.gz``/``.tar`` archive of it)::

    manifest.json          format, version, descriptor contract, models, metrics, threshold,
                           and the SHA-256 of every other file (plus its own)
    models/<variant>.onnx  e.g. fp32.onnx, fp16.onnx, int8.onnx (opaque bytes here)
    gallery.npz            per-image and per-artwork descriptors with their ids (no pickles)
    labels.json            [{id, title, metadata}] for every gallery artwork

Write with :func:`write_bundle` (atomic), read with :func:`load_bundle` (verifies everything),
move as one file with :func:`pack_bundle` / :func:`unpack_bundle` (hostile-archive safe).
"""

from __future__ import annotations

from muselens.runtime.bundle.archive import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_TOTAL_BYTES,
    is_archive_path,
    pack_bundle,
    unpack_bundle,
)
from muselens.runtime.bundle.checksum import dataset_digest, sha256_bytes, sha256_file
from muselens.runtime.bundle.bundle_error import BundleError
from muselens.runtime.bundle.gallery import Gallery
from muselens.runtime.bundle.labels import LabelInfo
from muselens.runtime.bundle.loader import Bundle, load_bundle
from muselens.runtime.bundle.manifest import (
    FORMAT,
    FORMAT_VERSION,
    SUPPORTED_FORMAT_VERSIONS,
    Manifest,
    ModelEntry,
    Threshold,
    model_file,
    reference_file,
)
from muselens.runtime.bundle.verify import read_manifest, verify_bundle_dir
from muselens.runtime.bundle.writer import write_bundle

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_TOTAL_BYTES",
    "FORMAT",
    "FORMAT_VERSION",
    "SUPPORTED_FORMAT_VERSIONS",
    "Bundle",
    "BundleError",
    "Gallery",
    "LabelInfo",
    "Manifest",
    "ModelEntry",
    "Threshold",
    "dataset_digest",
    "is_archive_path",
    "load_bundle",
    "model_file",
    "reference_file",
    "pack_bundle",
    "read_manifest",
    "sha256_bytes",
    "sha256_file",
    "unpack_bundle",
    "verify_bundle_dir",
    "write_bundle",
]

"""Loading a bundle for serving: a directory, or an archive unpacked first, verified in full.

The runtime calls :func:`load_bundle` once at start-up and relies on what it returns: the
manifest (descriptor contract, threshold, user-visible ``bundle_version``), the gallery, the
labels and the path of each model file for the inference engine.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from muselens.runtime.bundle.archive import unpack_bundle
from muselens.runtime.bundle.bundle_error import BundleError
from muselens.runtime.bundle.gallery import Gallery
from muselens.runtime.bundle.labels import LabelInfo
from muselens.runtime.bundle.checksum import sha256_bytes
from muselens.runtime.bundle.manifest import VOTE_INDEX_FILE, Manifest, reference_file
from muselens.runtime.bundle.verify import verify_bundle_dir
from muselens.core.data.images import decode_image
from muselens.runtime.verification import LocalFeatureStore


@dataclass(frozen=True, eq=False, repr=False)
class Bundle:
    """A verified bundle. Close it (or use ``with``) to delete a temporary extraction."""

    root: Path
    manifest: Manifest
    gallery: Gallery
    labels: Mapping[str, LabelInfo]
    local_features: LocalFeatureStore | None = None  # per gallery row, when exported with them
    _cleanup: weakref.finalize | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def bundle_version(self) -> str:
        return self.manifest.bundle_version

    def model_path(self, variant: str | None = None) -> Path:
        """The ONNX file of ``variant`` (default: the manifest's ``default_variant``)."""
        return self.root / self.manifest.model(variant).file

    def reference_image(self, row: int) -> np.ndarray | None:
        """The reference photo of gallery row ``row`` (RGB uint8) if the bundle carries it, else None.

        Photos are optional (``references/<row>.jpg``, checksummed like every file); the service
        uses them to explain a match on the reference's side.
        """
        if not 0 <= row < self.gallery.n_images:
            raise IndexError(f"gallery row {row} out of range (the gallery has {self.gallery.n_images} images)")
        rel = reference_file(row)
        if rel not in self.manifest.files:
            return None
        return decode_image((self.root / rel).read_bytes(), source=self.root / rel)

    def read_vote_index(self) -> bytes | None:
        """The local features' vote index built at export (faiss's serialisation; see
        :class:`~muselens.runtime.verification.LocalVoter`), or None when the bundle has none.
        Read when asked, not kept: it is hundreds of MB for a large museum."""
        digest = self.manifest.files.get(VOTE_INDEX_FILE)
        if digest is None:
            return None
        data = (self.root / VOTE_INDEX_FILE).read_bytes()
        if sha256_bytes(data) != digest:
            raise BundleError(f"bundle {self.root}: {VOTE_INDEX_FILE}: changed since the bundle was loaded "
                              "(sha256 mismatch)")
        return data

    def label(self, instance_id: str) -> LabelInfo:
        if instance_id not in self.labels:
            raise KeyError(f"bundle {self.name!r} has no label for instance {instance_id!r}")
        return self.labels[instance_id]

    def __repr__(self) -> str:
        return (f"Bundle(name={self.name!r}, bundle_version={self.bundle_version!r}, "
                f"root={str(self.root)!r}, models={sorted(self.manifest.models)}, {self.gallery!r})")

    def close(self) -> None:
        """Delete the temporary extraction of an archive (nothing to do for a directory)."""
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def load_bundle(path: Path | str, *, extract_dir: Path | str | None = None) -> Bundle:
    """Load and verify a bundle directory or archive; raise :class:`BundleError` naming the problem.

    An archive is unpacked into ``extract_dir`` (which must not exist; it is kept) or, by
    default, into a temporary folder removed by :meth:`Bundle.close` or when the bundle is
    garbage-collected. A bundle that fails verification leaves no extraction behind.
    """
    path = Path(path)
    if path.is_dir():
        contents = verify_bundle_dir(path)
        return Bundle(path, contents.manifest, contents.gallery, MappingProxyType(contents.labels),
                      contents.local_features)
    if not path.exists():
        raise BundleError(f"bundle {path} does not exist")
    if extract_dir is None:
        holder = Path(tempfile.mkdtemp(prefix="muselens-bundle-"))
        root, remove = holder / "bundle", holder
    else:
        root = remove = Path(extract_dir)
        if root.exists() or root.is_symlink():  # never delete what we did not create
            raise BundleError(f"cannot unpack {path} into {root}: it already exists")
    try:
        unpack_bundle(path, root)
        contents = verify_bundle_dir(root)
    except BaseException:
        _remove(remove)
        raise
    bundle = Bundle(root, contents.manifest, contents.gallery, MappingProxyType(contents.labels),
                    contents.local_features)
    if extract_dir is None:
        object.__setattr__(bundle, "_cleanup", weakref.finalize(bundle, _remove, remove))
    return bundle

"""The gallery: one L2-normalised descriptor per reference image, and one per artwork.

Stored as ``gallery.npz`` holding four plain arrays and nothing else -- ``descriptors``
float32 ``(N, D)``, ``instance_ids`` unicode ``(N,)``, ``average_descriptors`` float32
``(I, D)`` and ``average_ids`` unicode ``(I,)`` (sorted) -- written without object arrays and
read with ``allow_pickle=False``, so loading a gallery can never run code. The averages are
the instance-averaged descriptors of paper 004 (5.4.4); they are recomputed on load and must
match what the file says.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from muselens.core.metrics import instance_average

NPZ_KEYS = ("descriptors", "instance_ids", "average_descriptors", "average_ids")
NORM_TOLERANCE = 1e-3  # |norm - 1| allowed per row: fp16 engines normalise to about 1e-3
AVERAGE_TOLERANCE = 1e-5


def _descriptors(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty (N, D) matrix, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must be floating point, got {arr.dtype}")
    arr = np.array(arr, dtype=np.float32, order="C", copy=True)  # ours: made read-only below
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    norms = np.sqrt(np.einsum("ij,ij->i", arr, arr, dtype=np.float64))  # no float64 copy
    bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if bad.size:
        raise ValueError(f"{name} must be L2-normalised (|norm - 1| <= {NORM_TOLERANCE}); row "
                         f"{bad[0]} has norm {norms[bad[0]]:.6g} ({bad.size} rows off)")
    return arr


def _ids(x: object, name: str, length: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind != "U":
        if arr.dtype.kind == "O" and all(isinstance(v, str) for v in arr):
            arr = arr.astype(str)
        else:
            raise TypeError(f"{name} must hold strings, got dtype {arr.dtype}")
    if arr.shape[0] != length:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {length} descriptors")
    if np.any(arr == "") or any("\x00" in v for v in arr.tolist()):
        raise ValueError(f"{name} must be non-empty strings without NUL")
    return arr.copy()


@dataclass(frozen=True, eq=False, repr=False)
class Gallery:
    """Per-image descriptors and their artwork ids, with the per-artwork averages derived once.

    Immutable: arrays are read-only and :meth:`add` returns a new gallery. ``instance_ids``
    are strings (the dataset's folder names). Descriptors must already be L2-normalised
    (within ``NORM_TOLERANCE``): a gallery never renormalises what the model produced.
    """

    descriptors: np.ndarray
    instance_ids: np.ndarray
    average_descriptors: np.ndarray = field(init=False)
    average_ids: np.ndarray = field(init=False)

    __hash__ = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        desc = _descriptors(self.descriptors, "gallery descriptors")
        ids = _ids(self.instance_ids, "gallery instance_ids", desc.shape[0])
        avg, avg_ids = instance_average(desc, ids)
        for name, value in (("descriptors", desc), ("instance_ids", ids),
                            ("average_descriptors", np.ascontiguousarray(avg, dtype=np.float32)),
                            ("average_ids", avg_ids.astype(ids.dtype))):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def dim(self) -> int:
        return int(self.descriptors.shape[1])

    @property
    def n_images(self) -> int:
        return int(self.descriptors.shape[0])

    @property
    def n_instances(self) -> int:
        return int(self.average_ids.shape[0])

    def __len__(self) -> int:
        return self.n_images

    def __repr__(self) -> str:
        return f"Gallery(n_images={self.n_images}, n_instances={self.n_instances}, dim={self.dim})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Gallery):
            return NotImplemented
        return all(np.array_equal(getattr(self, k), getattr(other, k)) for k in NPZ_KEYS)

    def instance_average(self) -> tuple[np.ndarray, np.ndarray]:
        """``(averaged descriptors (I, D), sorted ids (I,))``, re-normalised (computed once)."""
        return self.average_descriptors, self.average_ids

    def add(self, descriptors: np.ndarray, instance_id: str) -> Gallery:
        """A new gallery with ``descriptors`` ((M, D) or (D,)) enrolled under ``instance_id``.

        The artwork may be new or already known; its average is recomputed either way.
        """
        if not isinstance(instance_id, str):
            raise TypeError(f"instance_id must be a string, got {type(instance_id).__name__}")
        new = np.asarray(descriptors)
        if new.ndim == 1:
            new = new[None, :]
        new = _descriptors(new, "enrolled descriptors")
        if new.shape[1] != self.dim:
            raise ValueError(f"enrolled descriptors have dimension {new.shape[1]}, "
                             f"the gallery has {self.dim}")
        ids = np.concatenate([self.instance_ids, np.array([instance_id] * new.shape[0], dtype=str)])
        return Gallery(np.concatenate([self.descriptors, new]), ids)

    def to_bytes(self) -> bytes:
        """The ``.npz`` file content (uncompressed: descriptors do not compress)."""
        buf = io.BytesIO()
        np.savez(buf, **{k: getattr(self, k) for k in NPZ_KEYS})
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "gallery.npz") -> Gallery:
        """Parse ``.npz`` content without unpickling; every key, dtype and average is checked."""
        try:
            npz = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{source} is not a readable .npz file: {exc}") from exc
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"{source} must be an .npz archive of arrays, got a single "
                             f"{type(npz).__name__}")
        arrays = {}
        with npz:
            keys = set(npz.files)
            if keys != set(NPZ_KEYS):
                raise ValueError(f"{source} must hold exactly the arrays {list(NPZ_KEYS)}, "
                                 f"found {sorted(keys)}")
            for key in NPZ_KEYS:
                try:
                    arrays[key] = npz[key]
                except ValueError as exc:  # numpy refuses object arrays without pickle
                    raise ValueError(f"{source}: array {key!r} cannot be read without unpickling "
                                     f"({exc}); galleries hold plain arrays only") from exc
                except (OSError, EOFError, zipfile.BadZipFile) as exc:
                    raise ValueError(f"{source}: array {key!r} is unreadable: {exc}") from exc
        for key in ("descriptors", "average_descriptors"):
            if arrays[key].dtype != np.float32:
                raise TypeError(f"{source}: {key} must be float32, got {arrays[key].dtype}")
        for key in ("instance_ids", "average_ids"):
            if arrays[key].dtype.kind != "U":
                raise TypeError(f"{source}: {key} must be a unicode string array, got {arrays[key].dtype}")
        try:
            gallery = cls(arrays["descriptors"], arrays["instance_ids"])
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{source}: {exc}") from exc
        if not np.array_equal(arrays["average_ids"], gallery.average_ids):
            raise ValueError(f"{source}: average_ids do not match the sorted unique instance_ids")
        stored = arrays["average_descriptors"]
        if stored.shape != gallery.average_descriptors.shape or not np.allclose(
                stored, gallery.average_descriptors, rtol=0.0, atol=AVERAGE_TOLERANCE):
            raise ValueError(f"{source}: average_descriptors do not match the instance average of "
                             f"its per-image descriptors")
        return gallery

    def save(self, path: Path | str) -> None:
        """Write the ``.npz`` and fsync it (a standalone gallery, e.g. after enrolment)."""
        with open(path, "wb") as f:
            f.write(self.to_bytes())
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path: Path | str) -> Gallery:
        path = Path(path)
        return cls.from_bytes(path.read_bytes(), str(path))

"""Every reference's local features in four plain arrays, saved without pickle.

``points`` (M, 2) float32 and ``descriptors`` (M, D) uint8 hold all references' features end
to end; reference ``r`` owns rows ``offsets[r]:offsets[r + 1]``; ``sizes[r]`` is its image's
(width, height). An ``.npz`` of these loads with ``allow_pickle=False``, so a bundle cannot
smuggle code in; :meth:`LocalFeatureStore.load` checks that the arrays agree before use.
About 1,000 ORB features take 40 KB a reference: 40 MB for 1,000 references.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from muselens.runtime.verification.features import LocalFeatures

ARRAYS = ("points", "descriptors", "offsets", "sizes")


@dataclass(frozen=True)
class LocalFeatureStore:
    points: np.ndarray
    descriptors: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray

    def __post_init__(self) -> None:
        p, d, o, s = self.points, self.descriptors, self.offsets, self.sizes
        if p.ndim != 2 or p.shape[1] != 2 or p.dtype != np.float32:
            raise ValueError(f"points must be (M, 2) float32, got {p.shape} {p.dtype}")
        if d.ndim != 2 or d.dtype != np.uint8 or d.shape[0] != p.shape[0]:
            raise ValueError(f"descriptors must be ({p.shape[0]}, D) uint8, got {d.shape} {d.dtype}")
        if o.ndim != 1 or o.dtype != np.int64 or o.size < 1 or o[0] != 0 or o[-1] != p.shape[0] \
                or (np.diff(o) < 0).any():
            raise ValueError(f"offsets must be int64, start at 0, never decrease and end at {p.shape[0]}")
        if s.shape != (o.size - 1, 2) or s.dtype != np.int32 or (s < 1).any():
            raise ValueError(f"sizes must be ({o.size - 1}, 2) int32 of positive width and height, got "
                             f"{s.shape} {s.dtype}")

    @classmethod
    def from_features(cls, features: Sequence[LocalFeatures], width: int) -> LocalFeatureStore:
        """One row block per reference, in gallery row order; ``width`` the descriptor width."""
        counts = [len(f) for f in features]
        return cls(np.concatenate([f.points for f in features] or [np.zeros((0, 2), np.float32)]).astype(np.float32),
                   np.concatenate([f.descriptors for f in features] or [np.zeros((0, width), np.uint8)])
                   .reshape(-1, width).astype(np.uint8),
                   np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                   np.array([f.size for f in features], np.int32).reshape(-1, 2))

    def __len__(self) -> int:
        return self.offsets.size - 1

    def count(self, row: int) -> int:
        """The reference's number of keypoints."""
        return int(self.offsets[row + 1] - self.offsets[row])

    def features(self, row: int) -> LocalFeatures:
        if not 0 <= row < len(self):
            raise IndexError(f"reference row {row} outside 0..{len(self) - 1}")
        a, b = int(self.offsets[row]), int(self.offsets[row + 1])
        return LocalFeatures(self.points[a:b], self.descriptors[a:b], (int(self.sizes[row, 0]),
                                                                       int(self.sizes[row, 1])))

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in ARRAYS)

    @property
    def width(self) -> int:
        """The descriptors' width in bytes (32 for ORB, 128 for RootSIFT)."""
        return int(self.descriptors.shape[1])

    def extend(self, features: Sequence[LocalFeatures]) -> LocalFeatureStore:
        """A new store with ``features`` appended as the next rows (enrolled photos)."""
        added = LocalFeatureStore.from_features(features, self.width)
        return LocalFeatureStore(np.concatenate([self.points, added.points]),
                                 np.concatenate([self.descriptors, added.descriptors]),
                                 np.concatenate([self.offsets, added.offsets[1:] + self.offsets[-1]]),
                                 np.concatenate([self.sizes, added.sizes]))

    def save(self, path: Path | str) -> None:
        Path(path).write_bytes(self.to_bytes())

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **{name: getattr(self, name) for name in ARRAYS})
        return buffer.getvalue()

    @classmethod
    def load(cls, path: Path | str) -> LocalFeatureStore:
        return cls.from_bytes(Path(path).read_bytes(), str(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "local features") -> LocalFeatureStore:
        """Parse the arrays (never pickles); a malformed file raises ValueError naming ``source``."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                missing = sorted(set(ARRAYS) - set(arrays.files))
                if missing:
                    raise ValueError(f"lacks arrays {missing}")
                loaded = [np.array(arrays[name]) for name in ARRAYS]
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 -- a truncated zip raises zipfile/OSError/EOFError
            raise ValueError(f"{source}: not a readable .npz of local features ({type(exc).__name__}: {exc})") from exc
        try:
            return cls(*loaded)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc

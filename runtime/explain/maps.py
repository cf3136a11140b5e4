"""What one image hands to an explanation: its map, and how the map becomes its descriptor.

Every descriptor muselens explains is *linear in cells up to one normaliser*: there are
per-cell vectors ``v_l`` (:class:`CellVectors`) such that the descriptor equals the sum of
``v_l`` over a set of cells (``locations``). So for any other vector ``r`` the similarity
``<descriptor, r>`` is the sum over those cells of ``<v_l, r>`` -- the heatmap (paper 001).

* :class:`RegionMaps` -- our region descriptor (paper 004, section 3.4.2), from the exported
  graph's ``descriptor_map`` ``(D, h, w)`` (each cell's vector ``m_l`` before summation) and
  ``locations`` ``(k,)``: ``descriptor = l2norm(sum of m_l over the k locations)``, so
  ``v_l = m_l / ||sum_{top-k} m_l||`` (defined at every cell, summing to the descriptor at the
  ``k`` locations).
* :class:`PooledMap` -- a plain conv feature map ``(C, h, w)`` with average (or sum) pooling,
  paper 001 eq. 2-3: ``v_l = alpha_l / (K^2 ||beta||)`` at every cell; or with max pooling,
  eq. 4-6: ``v_l = alpha_hat_l / ||beta||`` where each channel's maximum is credited to the
  cell(s) holding it, split equally between ties (``N_c``).

All arithmetic is float64, whatever the input precision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from muselens.core import checks

POOLINGS = ("average", "max")
Pooling = Literal["average", "max"]
# The default tolerance when a RegionMaps is given the graph's descriptor too: float32 graphs
# agree with the float64 recomputation to ~1e-6; 1e-3 leaves room for float16 engines while
# still catching outputs that do not belong together (another image, another batch item).
DESCRIPTOR_ATOL = 1e-3


def _locations(x: object, name: str, cells: int) -> np.ndarray:
    """Distinct flat cell indices ``(k,)`` in ``[0, cells)``, ``1 <= k <= cells``, as int64.

    Distinct because the exported graph picks ``k`` different cells (``TopK`` on a map of at
    least ``k`` cells); a repeated index means the outputs do not belong together.
    """
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (k,), got shape {arr.shape}")
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    k = arr.shape[0]
    if k == 0:
        raise ValueError(f"{name} must not be empty")
    if k > cells:
        raise ValueError(f"{name} has k={k} entries but the map has only {cells} cells")
    if int(arr.min()) < 0 or int(arr.max()) >= cells:
        raise ValueError(f"{name} must lie in [0, {cells}), got values from {int(arr.min())} to {int(arr.max())}")
    if np.unique(arr).shape[0] != k:
        raise ValueError(f"{name} repeats a cell; the k regions must be distinct cells")
    return arr.astype(np.int64)


@dataclass(frozen=True, eq=False)
class CellVectors:
    """Per-cell vectors ``(D, h, w)`` whose sum over ``locations`` is the descriptor ``(D,)``.

    ``<vectors[:, i, j], r>`` is what cell ``(i, j)`` contributes to ``<descriptor, r>``; the
    contribution is linear in ``r``, which class maps and ROI re-ranking exploit.
    """

    vectors: np.ndarray  # (D, h, w) float64
    locations: np.ndarray  # (k,) int64, flat row-major, distinct
    descriptor: np.ndarray  # (D,) float64, unit L2 norm

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.vectors.shape[1]), int(self.vectors.shape[2])


def _unit_norm(total: np.ndarray, what: str) -> float:
    norm = float(np.linalg.norm(total))
    if norm == 0.0:
        raise ValueError(f"{what} is the zero vector: its direction, and so the similarity, is undefined")
    return norm


@dataclass(frozen=True, eq=False)
class RegionMaps:
    """One image's region-descriptor outputs from the exported graph (batch dimension dropped).

    ``descriptor_map`` ``(D, h, w)`` and ``locations`` ``(k,)`` are what the explanation uses.
    ``descriptor`` ``(D,)``, when given, is checked against ``l2norm(sum of the map at the
    locations)`` (max absolute difference ``<= descriptor_atol``), catching outputs that do
    not belong together. :meth:`from_outputs` picks the fields from the graph's named outputs.
    """

    descriptor_map: np.ndarray
    locations: np.ndarray
    descriptor: np.ndarray | None = None
    descriptor_atol: float = DESCRIPTOR_ATOL

    def __post_init__(self) -> None:
        dmap = checks.float_array(self.descriptor_map, "descriptor_map", 3)
        d, h, w = dmap.shape
        locs = _locations(self.locations, "locations", h * w)
        object.__setattr__(self, "descriptor_map", dmap)
        object.__setattr__(self, "locations", locs)
        object.__setattr__(self, "descriptor_atol", checks.number(self.descriptor_atol, "descriptor_atol", low=0))
        if self.descriptor is not None:
            given = checks.vector(self.descriptor, "descriptor", d, of="the map")
            computed = self.cell_vectors().descriptor
            gap = float(np.max(np.abs(given - computed)))
            if gap > self.descriptor_atol:
                raise ValueError(f"descriptor differs from l2norm(sum of descriptor_map at locations) by up to "
                                 f"{gap:.3g} (> {self.descriptor_atol:g}): the outputs do not belong together")
            object.__setattr__(self, "descriptor", np.asarray(self.descriptor))

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, np.ndarray], *,
                     descriptor_atol: float = DESCRIPTOR_ATOL) -> RegionMaps:
        """From one image's outputs by name (batch dimension dropped); extra outputs are ignored.

        The graph's output names ``descriptor_map``, ``locations`` and ``descriptor`` are this
        class's field names; ``descriptor`` is checked against the map.
        """
        if not isinstance(outputs, Mapping):
            raise TypeError(f"outputs must map output names to arrays, got {type(outputs).__name__}")
        missing = [name for name in ("descriptor_map", "locations", "descriptor") if name not in outputs]
        if missing:
            raise ValueError(f"outputs lack {missing}; got {sorted(outputs)}")
        return cls(descriptor_map=outputs["descriptor_map"], locations=outputs["locations"],
                   descriptor=outputs["descriptor"], descriptor_atol=descriptor_atol)

    @property
    def k(self) -> int:
        return int(self.locations.shape[0])

    def cell_vectors(self) -> CellVectors:
        """``v_l = m_l / ||sum_{top-k} m_l||`` at every cell; they sum to the descriptor at the k locations."""
        dmap = self.descriptor_map.astype(np.float64)
        d, h, w = dmap.shape
        total = dmap.reshape(d, h * w)[:, self.locations].sum(axis=1)
        norm = _unit_norm(total, "the sum of descriptor_map at locations")
        return CellVectors(vectors=dmap / norm, locations=self.locations, descriptor=total / norm)


@dataclass(frozen=True, eq=False)
class PooledMap:
    """A conv feature map ``(C, h, w)`` flattened by average (= sum, after L2) or max pooling.

    The descriptor is ``l2norm(mean over cells)`` or ``l2norm(max over cells)`` per channel
    (paper 001 eq. 2 and 4); use this for backbones and baselines without region selection.
    """

    feature_map: np.ndarray
    pooling: Pooling = "average"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        object.__setattr__(self, "feature_map", checks.float_array(self.feature_map, "feature_map", 3))

    def cell_vectors(self) -> CellVectors:
        """Eq. 3 (average) or eq. 5-6 (max) as per-cell vectors summing to the descriptor."""
        fmap = self.feature_map.astype(np.float64)
        c, h, w = fmap.shape
        flat = fmap.reshape(c, h * w)
        if self.pooling == "average":
            pooled = flat.mean(axis=1)
            norm = _unit_norm(pooled, "the average-pooled feature")
            vectors = fmap / (h * w * norm)
            locations = np.arange(h * w, dtype=np.int64)
        else:
            pooled = flat.max(axis=1)
            norm = _unit_norm(pooled, "the max-pooled feature")
            # Eq. 5: each channel's maximum goes to the cell(s) holding it, split over N_c ties.
            # Float64 conversion is exact, so equality here is equality in the input dtype.
            holds = flat == pooled[:, None]
            ties = holds.sum(axis=1, keepdims=True)
            surrogate = np.where(holds, flat / ties, 0.0)
            vectors = (surrogate / norm).reshape(c, h, w)
            locations = np.flatnonzero(holds.any(axis=0)).astype(np.int64)
        return CellVectors(vectors=vectors, locations=locations, descriptor=pooled / norm)


"""Pairwise similarity decomposition (paper 001, section 3): which cells make two images match.

One image is *explained*: its map is decomposed. The other is only a vector ``r``: a gallery
descriptor, an instance-averaged gallery vector, a query descriptor, or a sum of references
(:mod:`~muselens.runtime.explain.class_map`). The score is ``<descriptor, r>`` -- the cosine
when ``r`` is L2-normalised, as gallery vectors are -- and ``r`` is used as given, because the
decomposition is linear in it.

The two directions are the same computation with roles swapped, named so call sites say
which image's cells they show:

* :func:`explain_query` -- the query's map against a reference vector: *where in the camera
  frame* the match comes from;
* :func:`explain_reference` -- a reference image's map (run the model on the reference image;
  the gallery stores only descriptors) against the query descriptor: *where in the artwork*.

For the same pair both give the same ``score`` (paper 001, "symmetrically").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from muselens.core import checks
from muselens.runtime.explain.maps import CellVectors, PooledMap, RegionMaps

SIDES = ("query", "reference")
Side = Literal["query", "reference"]


@dataclass(frozen=True, eq=False)
class Explanation:
    """How the explained image's cells account for ``score = <descriptor, other>``.

    * ``region_contributions`` ``(k,)`` float32: the contribution of each cell in
      ``locations`` (same order); they sum to ``score``.
    * ``region_map`` ``(h, w)`` float32: the same placed at ``locations``, zero elsewhere;
      sums to ``score``.
    * ``full_map`` ``(h, w)`` float32: every cell's ``<v_l, other>``. For average and max
      pooling it equals ``region_map``. For the region descriptor it is
      ``<m_l, other> / ||sum_{top-k} m_l||`` at *every* cell -- what each cell would add if it
      were one of the k regions, with the same normaliser -- and **only its cells at
      ``locations`` sum to the score**; the rest show unselected evidence.
    * ``locations`` ``(k,)`` int64 flat row-major cells: the k regions (best first) for the
      region descriptor, every cell for average pooling, the cells holding at least one
      channel maximum (ascending) for max pooling.
    * ``side``: which image was explained, ``"query"`` or ``"reference"``.

    ``score`` is computed in float64 from the map (``<l2norm(sum of v_l), other>``); it equals
    the graph's float32 descriptor dotted with ``other`` up to float rounding.
    """

    score: float
    region_contributions: np.ndarray
    region_map: np.ndarray
    full_map: np.ndarray
    locations: np.ndarray
    shape: tuple[int, int]
    side: Side = "query"

    @property
    def k(self) -> int:
        return int(self.locations.shape[0])


def _check_side(side: object) -> Side:
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return side  # type: ignore[return-value]


def cell_vectors_of(image: object) -> CellVectors:
    """The :class:`CellVectors` of a :class:`RegionMaps` or :class:`PooledMap`."""
    if not isinstance(image, (RegionMaps, PooledMap)):
        raise TypeError(f"image must be a RegionMaps or PooledMap, got {type(image).__name__}")
    return image.cell_vectors()


def explanation_from(cells: CellVectors, other: np.ndarray, side: Side) -> Explanation:
    """Decompose ``<cells.descriptor, other>`` over cells; ``other`` is a checked float64 ``(D,)``."""
    h, w = cells.shape
    full = np.einsum("dhw,d->hw", cells.vectors, other)
    contributions = full.reshape(-1)[cells.locations]
    region = np.zeros(h * w, dtype=np.float64)
    region[cells.locations] = contributions
    return Explanation(
        score=float(cells.descriptor @ other),
        region_contributions=contributions.astype(np.float32),
        region_map=region.reshape(h, w).astype(np.float32),
        full_map=full.astype(np.float32),
        locations=cells.locations.copy(),
        shape=(h, w),
        side=side,
    )


def decompose(image: RegionMaps | PooledMap, other: np.ndarray, *, side: Side = "query") -> Explanation:
    """Decompose ``<descriptor of image, other>`` over ``image``'s cells (``other``: ``(D,)``)."""
    side = _check_side(side)
    cells = cell_vectors_of(image)
    return explanation_from(cells, checks.vector(other, "other", cells.dim, of="the map"), side)


def explain_query(query: RegionMaps | PooledMap, reference: np.ndarray) -> Explanation:
    """Where in the *query* image its similarity to ``reference`` ``(D,)`` comes from."""
    cells = cell_vectors_of(query)
    return explanation_from(cells, checks.vector(reference, "reference", cells.dim, of="the map"), "query")


def explain_reference(reference: RegionMaps | PooledMap, query_descriptor: np.ndarray) -> Explanation:
    """Where in the *reference* image its similarity to ``query_descriptor`` ``(D,)`` comes from."""
    cells = cell_vectors_of(reference)
    query = checks.vector(query_descriptor, "query_descriptor", cells.dim, of="the map")
    return explanation_from(cells, query, "reference")

"""Class similarity maps (paper 001, section 4.5): the cells that tie an image to an artwork.

The paper sums the image's pairwise similarity maps against every other image of the class.
Each map is linear in the other image's vector, so that sum is *one* decomposition against
the sum of the vectors -- ``n`` times cheaper, and the same numbers up to float rounding.

Against an artwork's instance-averaged gallery vector ``l2norm(mean of references)`` the map
is the class map divided by ``||sum of references||``: the same picture, another scale.
"""

from __future__ import annotations

import numpy as np

from muselens.core import checks
from muselens.runtime.explain.decompose import Explanation, Side, _check_side, cell_vectors_of, explanation_from
from muselens.runtime.explain.maps import PooledMap, RegionMaps


def class_similarity(image: RegionMaps | PooledMap, references: np.ndarray, *, side: Side = "query") -> Explanation:
    """The sum of ``image``'s similarity maps against each row of ``references`` ``(n, D)``.

    ``score`` is the sum of the ``n`` pairwise scores; ``region_map`` and
    ``region_contributions`` sum to it, ``full_map`` is the sum of the pairwise full maps.
    Leave the image itself out of ``references`` when it is one of them (the paper compares
    with the *other* images of the class).
    """
    side = _check_side(side)
    cells = cell_vectors_of(image)
    refs = checks.rows(references, "references", cells.dim, of="the map")
    return explanation_from(cells, refs.sum(axis=0), side)

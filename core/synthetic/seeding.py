"""Where every random number comes from: one generator per (purpose, key) from the museum seed.

Nothing draws from global state or depends on process order, so an image is the same whichever
worker renders it and whenever.
"""

from __future__ import annotations

import numpy as np

# The first element of every spawn key says what the generator is for.
PLAN = 0  # which kind and style family each artwork gets
FAMILY = 1  # (family,): a style shared by several artworks
ARTWORK = 2  # (instance,): the artwork itself, its frame and title
PHOTO = 3  # (instance, split, index): one photo of an artwork
DISTRACTOR = 4  # (index,): one photo of no artwork
NEIGHBOUR = 5  # (family, variant): a work hung next to the recognised ones, never recognised itself
WALK = 16  # everything a visitor's walk draws (core/synthetic/walk.py and its parts), keyed by:
WALK_LAYOUT, WALK_ORDER, WALK_CAMERA, WALK_PASSERS, WALK_FRAME = 0, 1, 2, 3, 4

REFERENCE_SPLIT = 0
QUERY_SPLIT = 1


def rng_for(seed: int, purpose: int, *key: int) -> np.random.Generator:
    """A generator that depends only on the museum seed, the purpose and the key."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if any(k < 0 for k in key):
        raise ValueError(f"spawn key parts must be >= 0, got {key}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(purpose, *key))))

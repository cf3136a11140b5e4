"""Brute-force oracles: descriptors by direct pooling, scores by a dot product, cell terms by loops."""

from __future__ import annotations

import numpy as np


def l2norm(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def average_descriptor(fmap: np.ndarray) -> np.ndarray:
    return l2norm(fmap.astype(np.float64).mean(axis=(1, 2)))


def max_descriptor(fmap: np.ndarray) -> np.ndarray:
    return l2norm(fmap.astype(np.float64).max(axis=(1, 2)))


def region_descriptor(dmap: np.ndarray, locations: np.ndarray) -> np.ndarray:
    d, h, w = dmap.shape
    total = np.zeros(d)
    for loc in locations:
        total += dmap[:, int(loc) // w, int(loc) % w].astype(np.float64)
    return l2norm(total)


def region_cell_terms(dmap: np.ndarray, locations: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``<m_l, other> / ||sum_{top-k} m_l||`` at every cell, by loops."""
    d, h, w = dmap.shape
    total = np.zeros(d)
    for loc in locations:
        total += dmap[:, int(loc) // w, int(loc) % w].astype(np.float64)
    norm = np.linalg.norm(total)
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            out[i, j] = float(dmap[:, i, j].astype(np.float64) @ other) / norm
    return out


def average_cell_terms(fmap: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Eq. 3: ``<alpha_l, other> / (K^2 ||beta||)``, by loops."""
    c, h, w = fmap.shape
    beta = fmap.astype(np.float64).mean(axis=(1, 2))
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            out[i, j] = float(fmap[:, i, j].astype(np.float64) @ other) / (h * w * np.linalg.norm(beta))
    return out


def max_cell_terms(fmap: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Eq. 5-6 by loops over channels and cells."""
    c, h, w = fmap.shape
    beta = fmap.astype(np.float64).max(axis=(1, 2))
    out = np.zeros((h, w))
    for ch in range(c):
        holders = [(i, j) for i in range(h) for j in range(w) if fmap[ch, i, j] == beta[ch]]
        for i, j in holders:
            out[i, j] += beta[ch] / len(holders) * other[ch] / np.linalg.norm(beta)
    return out


def random_region_outputs(rng: np.random.Generator, d: int, h: int, w: int, k: int):
    """A float32 descriptor map, k distinct locations and the graph's float32 descriptor."""
    dmap = rng.normal(size=(d, h, w)).astype(np.float32)
    locations = rng.permutation(h * w)[:k].astype(np.int64)
    descriptor = region_descriptor(dmap, locations).astype(np.float32)
    return dmap, locations, descriptor

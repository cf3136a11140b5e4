"""Shared fixtures: small museums written to disk, built from seeded random images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest_plugins = ["tests.tiny_model"]


def write_image(path: Path, seed: int, size: tuple[int, int] = (48, 64)) -> Path:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, image)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())
    return path


@pytest.fixture
def tiny_museum(tmp_path: Path) -> Path:
    """3 artworks x 2 references, 1 query each, 2 distractors: clean."""
    root = tmp_path / "museum"
    seed = 0
    for iid in ("a0", "a1", "a2"):
        for k in range(2):
            write_image(root / "references" / iid / f"r{k}.jpg", seed := seed + 1)
        write_image(root / "queries" / iid / "q0.png", seed := seed + 1)
    for k in range(2):
        write_image(root / "distractors" / f"d{k}.jpg", seed := seed + 1)
    return root


@pytest.fixture(autouse=True)
def _fresh_client_use():
    """Every test starts with no client's recent use on record (the process meter is global)."""
    from muselens.runtime.engine.gate import CLIENT_USE

    CLIENT_USE.clear()
    yield

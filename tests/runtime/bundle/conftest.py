"""A small valid bundle's ingredients, and the bundle itself written to disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from muselens.core.preprocess import PreprocessContract
from muselens.runtime.bundle import Gallery, LabelInfo, write_bundle

DIM = 8
DIGEST = "ab" * 32


def unit_rows(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_gallery(seed: int = 0) -> Gallery:
    ids = ["a0", "a0", "a1", "a2", "a2", "a2"]
    return Gallery(unit_rows(len(ids), seed=seed), ids)


def make_labels() -> list[LabelInfo]:
    return [LabelInfo("a0", "Mona", {"artist": "Leonardo"}), LabelInfo("a1", "Nighthawks"),
            LabelInfo("a2", "Guernica", {"year": "1937"})]


def descriptor(dim: int = DIM) -> dict[str, Any]:
    """A descriptor contract as the manifest stores it (:meth:`DescriptorContract.to_dict`)."""
    preprocess = PreprocessContract(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    return {"dim": dim, "k": 4, "normalisation": "l2", "similarity": "dot",
            "input": "NHWC uint8 RGB", "input_name": "image", "outputs": ["descriptor"], "short_side": 224,
            "max_aspect": 2.0, "interpolation": "bilinear", "antialias": True, "stride": 32,
            "preprocess": preprocess.to_dict()}


def bundle_kwargs(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Every argument of write_bundle, valid; fp32 from a file, fp16 from bytes."""
    fp32 = tmp_path / "src-fp32.onnx"
    if not fp32.exists():
        fp32.write_bytes(b"onnx-fp32-" + bytes(range(256)) * 4)
    kwargs: dict[str, Any] = dict(
        name="Test Museum", bundle_version="2026-11-23T15:00Z-abc123", backbone="resnet50",
        descriptor=descriptor(), model_files={"fp32": fp32, "fp16": b"onnx-fp16-bytes"},
        default_variant="fp32", gallery=make_gallery(), labels=make_labels(),
        training={"epochs": 3, "lr": 1e-4, "losses": ["triplet"]}, data_digest=DIGEST,
        metrics={"fp32": {"mp_at_1": 0.9, "map": 0.8, "n_queries": 12}},
        threshold={"value": 0.5, "target_far": 0.01, "n_distractors": 40, "calibrated": True},
        created="2026-11-23T15:00:00Z", muselens_version="0.1.0",
    )
    kwargs.update(overrides)
    return kwargs


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "bundle", **bundle_kwargs(tmp_path))

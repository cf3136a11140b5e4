"""Export tests share the session's tiny trained run and models (tests/tiny_model.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on 2 shared cores torch's thread pool competes with ONNX Runtime's
    and with other processes, and small tensors gain nothing from it (seconds become tens)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ScrambledDescriber:
    """A describer whose descriptors are seeded random unit vectors: a variant drifting all the way."""

    def __init__(self, describer):
        self.describer = describer

    def describe_records(self, records, skipped=None):
        descriptors, ids = self.describer.describe_records(records, skipped)
        noise = np.random.default_rng(len(ids)).normal(size=descriptors.shape).astype(np.float32)
        return noise / np.linalg.norm(noise, axis=1, keepdims=True), ids


@pytest.fixture
def scramble(monkeypatch):
    """``scramble(variant)``: the export describes the museum with random descriptors for that
    variant (fp32's stay real), so its drift bounds fail for sure."""
    import muselens.export.bundle as bundle_module

    real = bundle_module.OrtDescriber

    def describer(path, **kwargs):
        made = real(path, **kwargs)
        return ScrambledDescriber(made) if Path(path).stem in scrambled else made

    scrambled: set[str] = set()
    monkeypatch.setattr(bundle_module, "OrtDescriber", describer)
    return scrambled.add

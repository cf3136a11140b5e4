"""Export tests share the session's tiny trained run and models (tests/tiny_model.py)."""

from __future__ import annotations

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

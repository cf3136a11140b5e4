"""Shared by every torch test: one intra-op thread.

Tiny test inputs gain nothing from threads, and on a shared 2-core machine OpenMP's spinning
threads make each small convolution wait for a time slice (measured 10-20x slower)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

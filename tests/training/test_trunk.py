"""The frozen trunk's cache: joining caches shares their features and checks they match."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from muselens.core.preprocess import PreprocessContract
from muselens.training.trunk import TrunkCache

CONTRACT = PreprocessContract(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear")


def _cache(n: int, **kw) -> TrunkCache:
    images = [np.random.default_rng(i).integers(0, 256, (32, 40, 3), dtype=np.uint8) for i in range(n)]
    return TrunkCache(nn.Conv2d(3, 4, 3, stride=2), images, CONTRACT, short_side=32, progress=False, **kw)


def test_joined_caches_hold_both_in_order():
    torch.manual_seed(0)
    a, b = _cache(2), _cache(3)
    joined = TrunkCache.joined([a, b])
    assert len(joined) == 5 and joined.short_side == 32
    assert torch.equal(joined.get(1, "cpu"), a.get(1, "cpu")) and torch.equal(joined.get(4, "cpu"), b.get(2, "cpu"))
    with pytest.raises(ValueError, match="share short_side, max_aspect and dtype"):
        TrunkCache.joined([a, _cache(1, dtype=torch.float32)])
    with pytest.raises(ValueError, match="at least one"):
        TrunkCache.joined([])

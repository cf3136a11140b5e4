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


def test_batches_group_images_of_one_shape_in_order_and_stack_them():
    torch.manual_seed(0)
    images = [np.random.default_rng(i).integers(0, 256, (32, 40 + 8 * (i % 2), 3), dtype=np.uint8) for i in range(7)]
    cache = TrunkCache(nn.Conv2d(3, 4, 3, stride=2), images, CONTRACT, short_side=32, progress=False)
    rows = [6, 1, 2, 3, 4, 0, 5]
    groups = cache.batches(rows, 2)
    assert sorted(p for g in groups for p in g) == list(range(7))
    for group in groups:
        assert len(group) <= 2 and group == sorted(group)
        assert len({cache.features[rows[p]].shape for p in group}) == 1
        stacked = cache.stack([rows[p] for p in group], "cpu")
        assert torch.equal(stacked, torch.cat([cache.get(rows[p], "cpu") for p in group]))
    with pytest.raises(ValueError, match="batch"):
        cache.batches(rows, 0)


def test_batched_top_runs_give_each_images_own_descriptor():
    from muselens.training.backbones.backbone_registry import build_backbone
    from muselens.training.classifier import InstanceClassifier, split_blocks
    from muselens.training.regions import RegionDescriptorNet
    from muselens.training.stages.region_descriptor import run_top, run_top_rows

    torch.manual_seed(0)
    classifier = InstanceClassifier(build_backbone(pretrained=False), ["a", "b", "c"])
    frozen, top = split_blocks(classifier, 2)
    net = RegionDescriptorNet(classifier.backbone, classifier.head, dim=8, k=4).eval()
    images = [np.random.default_rng(i).integers(0, 256, (64, 64 + 32 * (i % 2), 3), dtype=np.uint8) for i in range(5)]
    cache = TrunkCache(nn.Sequential(*frozen), images, CONTRACT, short_side=64, progress=False)
    top = nn.Sequential(*top).eval()
    rows = [4, 0, 3, 1]
    with torch.no_grad():
        descriptors, logits = run_top_rows(net, top, cache, rows, "cpu", batch=3)
        for n, i in enumerate(rows):
            one = run_top(net, top, cache, i, "cpu")
            torch.testing.assert_close(descriptors[n:n + 1], one.descriptor, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(logits[n:n + 1], one.region_logits, atol=1e-4, rtol=1e-4)

"""Stage 3's gradient caching gives the gradient of the direct, memory-hungry backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from muselens.training.backbones.backbone_registry import build_backbone
from muselens.training.classifier import InstanceClassifier, set_trainable_blocks, split_blocks
from muselens.training.regions import RegionDescriptorNet
from muselens.training.stages.region_descriptor import (DescriptorConfig, build_stage3_loss,
                                                 set_frozen_bn_train_mode, step_gradients)
from muselens.training.trunk import TrunkCache


@pytest.mark.parametrize("loss", ["triplet-dot", "batch-hard-hinge"])
def test_grad_cache_equals_direct_backward(loss):
    torch.manual_seed(0)
    backbone = build_backbone("tf_efficientnet_lite0", pretrained=False)
    model = InstanceClassifier(backbone, ["a", "b", "c"])
    set_trainable_blocks(model, 2)
    frozen, trainable = split_blocks(model, 2)
    net = RegionDescriptorNet(backbone, model.head, dim=8, k=2, if_fewer="repeat")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64 + 8 * i, 72, 3), dtype=np.uint8) for i in range(6)]
    cache = TrunkCache(nn.Sequential(*frozen), images, backbone.contract, short_side=64,
                       progress=False, dtype=torch.float32)
    top = nn.Sequential(*trainable)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    rows = np.arange(6)
    config = DescriptorConfig(loss=loss, dim=8, k=2)
    loss_fn = build_stage3_loss(config)
    triplets = torch.tensor([[0, 1, 2], [2, 3, 4], [4, 5, 0]]) if loss_fn.requires_triplets else None
    set_frozen_bn_train_mode(net)
    params = [p for p in net.parameters() if p.requires_grad]

    grads = {}
    for cached in (False, True):
        for p in params:
            p.grad = None
        value, _ = step_gradients(net, top, cache, rows, labels, triplets, loss_fn, "cpu", grad_cache=cached)
        grads[cached] = (value, [None if p.grad is None else p.grad.clone() for p in params])
    assert grads[True][0] == pytest.approx(grads[False][0], rel=1e-5)
    assert any(g is not None for g in grads[True][1])
    for a, b in zip(grads[False][1], grads[True][1]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

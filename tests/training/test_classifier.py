"""The instance classifier: dense logits reuse the head, trainable blocks and BatchNorm modes per stage."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from muselens.training.backbones import build_backbone
from muselens.training.classifier import (
    InstanceClassifier,
    linear_as_conv,
    resolve_device,
    set_stage_modes,
    set_trainable_blocks,
    split_blocks,
)




@pytest.fixture(scope="module")
def _backbone():
    return build_backbone("tf_efficientnet_lite0", pretrained=False)


@pytest.fixture
def model(_backbone) -> InstanceClassifier:
    return InstanceClassifier(copy.deepcopy(_backbone), ["a", "b", "c"], seed=0)


def test_dense_logits_average_to_the_pooled_logits(model):
    model.eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        dense = model.dense_logits(x)
        pooled = model.logits(x)
    assert dense.shape == (2, 3, 3, 2) and pooled.shape == (2, 3)
    torch.testing.assert_close(dense.mean(dim=(2, 3)), pooled, rtol=1e-4, atol=1e-5)


def test_linear_as_conv_matches_the_linear_layer_per_location():
    linear = nn.Linear(5, 4)
    fmap = torch.randn(2, 5, 3, 2)
    out = linear_as_conv(fmap, linear)
    torch.testing.assert_close(out[1, :, 2, 0], linear(fmap[1, :, 2, 0]))
    with pytest.raises(ValueError, match="feature map"):
        linear_as_conv(torch.randn(2, 6, 3, 2), linear)


def test_head_init_is_seeded(_backbone):
    a = InstanceClassifier(copy.deepcopy(_backbone), ["a", "b"], seed=1)
    b = InstanceClassifier(copy.deepcopy(_backbone), ["a", "b"], seed=1)
    c = InstanceClassifier(copy.deepcopy(_backbone), ["a", "b"], seed=2)
    assert torch.equal(a.head.weight, b.head.weight) and not torch.equal(a.head.weight, c.head.weight)
    assert a.head.out_features == 2 and torch.all(a.head.bias == 0)
    assert a.meta()["instance_ids"] == ["a", "b"] and a.meta()["backbone"] == "tf_efficientnet_lite0"


def test_only_top_blocks_and_head_require_grad(model):
    set_trainable_blocks(model, 2)
    frozen, trainable = split_blocks(model, 2)
    assert len(trainable) == 2 and len(frozen) == len(model.backbone.blocks()) - 2
    assert all(p.requires_grad for b in trainable for p in b.parameters())
    assert not any(p.requires_grad for b in frozen for p in b.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    assert not any(p.requires_grad for p in model.backbone.classifier.parameters())
    set_trainable_blocks(model, 0)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}


def test_stage_modes_put_batchnorm_where_each_stage_needs_it(model):
    set_trainable_blocks(model, 3)
    frozen, trainable = split_blocks(model, 3)
    set_stage_modes(model, 3, bn="trainable_blocks")
    assert all(m.training for b in trainable for m in b.modules() if isinstance(m, _BatchNorm))
    assert not any(m.training for b in frozen for m in b.modules() if isinstance(m, _BatchNorm))
    set_stage_modes(model, 3, bn="frozen")
    assert not any(m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert model.training and model.head.training
    with pytest.raises(ValueError, match="bn mode"):
        set_stage_modes(model, 3, bn="sometimes")
    with pytest.raises(ValueError, match="set_trainable_blocks"):
        set_stage_modes(model, 2, bn="frozen")  # block -3 learns but would be frozen


def test_arguments_are_checked(_backbone, model):
    with pytest.raises(ValueError, match="at least 2"):
        InstanceClassifier(copy.deepcopy(_backbone), ["a"])
    with pytest.raises(ValueError, match="unique"):
        InstanceClassifier(copy.deepcopy(_backbone), ["a", "a"])
    with pytest.raises(TypeError, match="Backbone"):
        InstanceClassifier(nn.Linear(2, 2), ["a", "b"])
    with pytest.raises(ValueError, match="train_blocks"):
        set_trainable_blocks(model, 99)
    with pytest.raises(ValueError, match="train_blocks"):
        set_trainable_blocks(model, -1)
    with pytest.raises(ValueError, match="call model.to"):
        resolve_device(model, "cuda")
    assert resolve_device(model, "cpu") == torch.device("cpu")

"""The Backbone interface, the same for every registered network (random weights: fast)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from muselens.core.preprocess import PreprocessContract
from muselens.training.backbones.base import Backbone
from muselens.training.backbones.backbone_registry import BACKBONES, build_backbone

SIZES = [(97, 131), (224, 224), (333, 517), (1, 1), (33, 31)]


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def backbone(request) -> Backbone:
    torch.manual_seed(0)
    return build_backbone(request.param, pretrained=False)


@pytest.mark.parametrize("hw", SIZES)
def test_features_are_fully_convolutional_with_ceil_sizes(backbone, hw):
    h, w = hw
    with torch.inference_mode():
        fmap = backbone.features(torch.rand(1, 3, h, w))
    assert fmap.shape == (1, backbone.feature_dim, math.ceil(h / 32), math.ceil(w / 32))
    assert backbone.stride == 32 and backbone.feature_dim == 1280


def test_forward_is_features(backbone):
    x = torch.rand(2, 3, 64, 96)
    with torch.inference_mode():
        torch.testing.assert_close(backbone(x), backbone.features(x))


def test_logits_are_pooled_features_through_the_classifier(backbone):
    x = torch.rand(2, 3, 70, 90)
    with torch.inference_mode():
        logits = backbone.logits(x)
        dense = backbone.dense_logits(x)
        expected = backbone.classifier(backbone.features(x).mean(dim=(2, 3)))
    assert logits.shape == (2, 1000) and dense.shape == (2, 1000, 3, 3)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(dense.mean(dim=(2, 3)), logits, rtol=1e-4, atol=1e-4)


def test_blocks_are_the_body_in_order(backbone):
    blocks = backbone.blocks()
    assert len(blocks) == 9  # stem, 7 stages, head
    assert all(a is b for a, b in zip(blocks, backbone.body))
    params = {id(p) for b in blocks for p in b.parameters()} | {id(p) for p in backbone.classifier.parameters()}
    assert params == {id(p) for p in backbone.parameters()}
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        y = x
        for block in blocks:
            y = block(y)
        torch.testing.assert_close(y, backbone.features(x))


def test_top_blocks_can_be_trained_alone(backbone):
    """Freezing all but the last two blocks leaves gradients only there."""
    for p in backbone.parameters():
        p.requires_grad_(False)
    for block in backbone.blocks()[-2:]:
        for p in block.parameters():
            p.requires_grad_(True)
    try:
        backbone.features(torch.rand(1, 3, 64, 64)).sum().backward()
        top = {id(p) for b in backbone.blocks()[-2:] for p in b.parameters()}
        for p in backbone.parameters():
            assert (p.grad is not None) == (id(p) in top)
    finally:
        for p in backbone.parameters():
            p.requires_grad_(True)
            p.grad = None


@pytest.mark.parametrize("x, error", [(torch.rand(3, 32, 32), ValueError), (torch.rand(1, 1, 32, 32), ValueError)])
def test_features_reject_bad_input(backbone, x, error):
    with pytest.raises(error, match="N, 3, H, W"):
        backbone.features(x)


def test_features_reject_non_tensors(backbone):
    with pytest.raises(TypeError, match="torch.Tensor"):
        backbone.features([[1.0]])


def test_constructor_checks_its_parts():
    contract = PreprocessContract(mean=(0, 0, 0), std=(1, 1, 1))
    parts = dict(name="x", stem=nn.Identity(), stages=[nn.Identity()], head=nn.Identity())
    with pytest.raises(TypeError, match="classifier"):
        Backbone(**parts, classifier=nn.Conv2d(4, 2, 1), contract=contract)
    with pytest.raises(TypeError, match="contract"):
        Backbone(**parts, classifier=nn.Linear(4, 2), contract=contract.to_dict())
    with pytest.raises(ValueError, match="stage"):
        Backbone(**{**parts, "stages": []}, classifier=nn.Linear(4, 2), contract=contract)

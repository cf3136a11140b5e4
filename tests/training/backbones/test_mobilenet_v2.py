"""MobileNetV2 with the offline torchvision weights."""

from __future__ import annotations

import pytest
import torch

from muselens.training.backbones.mobilenet_v2 import build_mobilenet_v2

from .conftest import ESPRESSO, imagenet_probabilities


def test_pretrained_mobilenet_v2_sees_espresso(coffee):
    probs = imagenet_probabilities(build_mobilenet_v2(pretrained=True).eval(), coffee)
    assert int(probs.argmax()) == ESPRESSO
    assert float(probs[ESPRESSO]) > 0.5


def test_stages_follow_the_paper_table():
    backbone = build_mobilenet_v2(pretrained=False).eval()
    blocks = backbone.blocks()
    assert len(blocks) == 9
    x = torch.zeros(1, 3, 64, 64)
    channels, sides = [], []
    with torch.inference_mode():
        for block in blocks:
            x = block(x)
            channels.append(x.shape[1])
            sides.append(x.shape[2])
    assert channels == [32, 16, 24, 32, 64, 96, 160, 320, 1280]
    assert sides == [32, 32, 16, 8, 4, 4, 2, 2, 2]


def test_imagenet_contract():
    c = build_mobilenet_v2(pretrained=False).contract
    assert c.mean == (0.485, 0.456, 0.406) and c.std == (0.229, 0.224, 0.225)
    assert c.interpolation == "bilinear" and c.native_size == 224


def test_only_the_standard_width_exists():
    with pytest.raises(ValueError, match="mobilenet_v2"):
        build_mobilenet_v2("mobilenet_v2_140")

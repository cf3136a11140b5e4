"""EfficientNet-Lite: the checkpoint renaming and the real ImageNet weights."""

from __future__ import annotations

import pytest
import timm
import torch

from muselens.training.backbones.efficientnet_lite import (
    LITE_VARIANTS,
    build_efficientnet_lite,
    rename_lite_state_dict,
    timm_block_positions,
)
from muselens.training.backbones.weights import package_file, read_state_dict

from .conftest import ESPRESSO, imagenet_probabilities

T = torch.zeros(1)


def test_rename_maps_every_layer_kind():
    state = {
        "_conv_stem.weight": T, "_bn0.running_var": T,
        "_blocks.0._depthwise_conv.weight": T, "_blocks.0._bn1.bias": T,
        "_blocks.0._project_conv.weight": T, "_blocks.0._bn2.weight": T,
        "_blocks.1._expand_conv.weight": T, "_blocks.1._bn0.weight": T,
        "_blocks.1._depthwise_conv.weight": T, "_blocks.1._bn1.running_mean": T,
        "_blocks.1._project_conv.weight": T, "_blocks.1._bn2.num_batches_tracked": T,
        "_blocks.2._expand_conv.weight": T,
        "_conv_head.weight": T, "_bn1.bias": T, "_fc.weight": T, "_fc.bias": T,
    }
    renamed = rename_lite_state_dict(state, [(0, 0), (1, 0), (1, 1)])
    assert set(renamed) == {
        "conv_stem.weight", "bn1.running_var",
        "blocks.0.0.conv_dw.weight", "blocks.0.0.bn1.bias", "blocks.0.0.conv_pw.weight", "blocks.0.0.bn2.weight",
        "blocks.1.0.conv_pw.weight", "blocks.1.0.bn1.weight", "blocks.1.0.conv_dw.weight",
        "blocks.1.0.bn2.running_mean", "blocks.1.0.conv_pwl.weight", "blocks.1.0.bn3.num_batches_tracked",
        "blocks.1.1.conv_pw.weight",
        "conv_head.weight", "bn2.bias", "classifier.weight", "classifier.bias",
    }


@pytest.mark.parametrize(
    "state, match",
    [
        ({"_blocks.0._se_reduce.weight": T}, "unknown layer"),
        ({"_blocks.5._depthwise_conv.weight": T}, "block 5 does not exist"),
        ({"_stem.weight": T}, "unknown checkpoint key"),
        ({"fc.weight": T}, "unknown checkpoint key"),
    ],
)
def test_rename_refuses_what_it_does_not_understand(state, match):
    with pytest.raises(ValueError, match=match):
        rename_lite_state_dict(state, [(0, 0)])


@pytest.mark.parametrize("name", sorted(LITE_VARIANTS))
def test_checkpoint_keys_match_timm_exactly(name):
    """Zero missing and zero unexpected keys, and every shape equal, for the tf_ variant."""
    variant = LITE_VARIANTS[name]
    model = timm.create_model(variant.timm_name, pretrained=False)
    path = package_file(variant.package, variant.checkpoint, pip_name=variant.pip_name)
    renamed = rename_lite_state_dict(read_state_dict(path), timm_block_positions(model))
    own = model.state_dict()
    assert set(renamed) == set(own)
    assert all(renamed[k].shape == own[k].shape for k in own)


@pytest.mark.parametrize("name", sorted(LITE_VARIANTS))
def test_pretrained_lite_sees_espresso(name, coffee):
    backbone = build_efficientnet_lite(name, pretrained=True).eval()
    probs = imagenet_probabilities(backbone, coffee)
    assert int(probs.argmax()) == ESPRESSO
    assert float(probs[ESPRESSO]) > 0.5


def test_lite_contract_is_the_tensorflow_one():
    backbone = build_efficientnet_lite("tf_efficientnet_lite0", pretrained=False)
    c = backbone.contract
    assert c.mean == (0.5, 0.5, 0.5) and c.std == (0.5, 0.5, 0.5) and c.scale == pytest.approx(1 / 255)
    assert c.interpolation == "bicubic" and c.stride == 32 and c.native_size == 224
    cfg = timm.models.get_pretrained_cfg("tf_efficientnet_lite0")
    assert (tuple(cfg.mean), tuple(cfg.std), cfg.interpolation) == (c.mean, c.std, c.interpolation)


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="tf_efficientnet_lite0"):
        build_efficientnet_lite("efficientnet_lite0")

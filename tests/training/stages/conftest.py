"""Tiny models and datasets for the stage tests: random-init backbone, 3 classes, small images."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from muselens.core.data.museum_dataset import ImageRecord
from muselens.training.backbones import build_backbone
from muselens.training.datasets import InstanceLabels, LabelledImages
from muselens.training.classifier import InstanceClassifier

COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220))




@pytest.fixture(scope="session")
def _lite0() -> object:
    torch.manual_seed(0)  # random init drawn from the global generator: fix it
    return build_backbone("tf_efficientnet_lite0", pretrained=False)


@pytest.fixture
def model(_lite0) -> InstanceClassifier:
    torch.manual_seed(0)
    return InstanceClassifier(copy.deepcopy(_lite0), ["a", "b", "c"], seed=0)


def colour_images(per_class: int = 4, size: tuple[int, int] = (40, 56), seed: int = 0) -> LabelledImages:
    """3 classes of noisy solid colours: an easy problem whose loss must fall."""
    rng = np.random.default_rng(seed)
    labels = InstanceLabels(("a", "b", "c"))
    images, targets, records = [], [], []
    for label, colour in enumerate(COLOURS):
        for k in range(per_class):
            noise = rng.normal(0, 20, size=(*size, 3))
            images.append(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8))
            targets.append(label)
            records.append(ImageRecord(f"/synthetic/{label}/{k}.png", "references", labels.instance_ids[label]))
    return LabelledImages(images, targets, records, labels)

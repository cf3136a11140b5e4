"""The espresso photo of scikit-image, prepared the way the paper's IM baseline feeds a network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from muselens.core.preprocess import prepare_square
from muselens.training.backbones.base import Backbone

ESPRESSO = 967  # ImageNet class index


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.coffee()




def imagenet_probabilities(backbone: Backbone, image: np.ndarray) -> torch.Tensor:
    """Softmax over the 1000 ImageNet classes for ``image`` at the network's native square size."""
    x = prepare_square(image, backbone.contract, backbone.contract.native_size)
    with torch.inference_mode():
        return backbone.logits(torch.from_numpy(x)).softmax(dim=1)[0]

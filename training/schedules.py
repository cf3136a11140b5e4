"""Named training schedules: the settings that decide how long a run takes, by machine.

``TrainConfig``'s defaults are the paper's schedule (30/10/6 epochs at 448, for a GPU: ``full``).
``cpu``, the default on a CPU, keeps its epochs at short side 320; ``short`` cuts them to fit a
demo in minutes on 2 CPU cores; ``tiny`` is for tests. A
schedule is a partial configuration (nested like the YAML file), applied by :func:`schedule_config`.
"""

from __future__ import annotations

import copy
from typing import Any

from muselens.training.train_config import TrainConfig, load_config, merge

SCHEDULES: dict[str, dict[str, Any]] = {
    # The paper's 30/10/6 epochs at short side 320, for 2 CPU cores: stages 1-2 draw from pooled
    # trunk features (TrainConfig.view_pool), stage 3 runs cached features in batches.
    "cpu": {
        "eval_short_side": 320,
        "stage2": {"short_sides": [320, 224]},
        "stage3": {"short_side": 320, "dim": 256, "triplets_per_step": 32, "views_per_photo": 1},
    },
    # A few minutes on 2 CPU cores for the demo's museum.
    "short": {
        "eval_short_side": 320,
        "stage1": {"epochs": 5, "batch_size": 16, "image_size": 224},
        "stage2": {"epochs": 2, "images_per_step": 8, "short_sides": [320, 224]},
        # one phone view per one-photo artwork: a third of the triplet steps of the default 3, and
        # on mcv-paintings 98.4 mP@1 (k = 32) already
        "stage3": {"epochs": 4, "short_side": 320, "dim": 256, "triplets_per_step": 32, "views_per_photo": 1},
    },
    "full": {},  # TrainConfig's defaults: the paper's schedule (use --device cuda)
    "tiny": {
        "train_blocks": 2, "eval_short_side": 64,
        "stage1": {"epochs": 1, "batch_size": 4, "image_size": 64},
        "stage2": {"epochs": 1, "images_per_step": 2, "short_sides": [64]},
        "stage3": {"epochs": 1, "dim": 8, "k": 4, "short_side": 64, "triplets_per_step": 4},  # 2x2 cells
    },
}


def schedule_config(name: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The default configuration with schedule ``name`` applied, then ``overrides`` (nested dicts)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    return load_config(None, merge(copy.deepcopy(SCHEDULES[name]), overrides or {}))

"""The training configuration: a YAML file per museum sets defaults, flags override, and the
resolved result is written beside the run (so a run says exactly how it was made)."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muselens.core import checks
from muselens.training.augment import AugmentConfig
from muselens.training.backbones.backbone_registry import BACKBONES, DEFAULT_BACKBONE
from muselens.training.classifier import DEFAULT_TRAIN_BLOCKS
from muselens.training.stages.classification import ClassificationConfig
from muselens.training.stages.region_descriptor import DescriptorConfig
from muselens.training.stages.fcn import FCNConfig

STAGES = (1, 2, 3)


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message names the key."""


@dataclass(frozen=True)
class ValidationConfig:
    """How often the per-epoch validation (the queries' mP@1 / mAP against the references) runs.

    A pass describes every reference and query through the top blocks, which on a large museum
    costs a good part of an epoch. A museum of at most ``every_epoch_up_to`` validation images
    (references plus queries) is validated after every epoch: cheap, and its history is the
    same in every run. A larger one after an epoch only while the stage's validation time, this
    pass included (estimated from the last), stays within ``budget`` times the stage's training
    time, and always after the last epoch of a stage. Which epochs fit the budget depends on
    measured times; the training result never does.
    """

    budget: float = 0.1
    every_epoch_up_to: int = 200

    def __post_init__(self) -> None:
        if not checks.is_number(self.budget) or math.isnan(self.budget) or self.budget < 0:
            raise ValueError(f"budget must be a number >= 0, got {self.budget!r}")
        checks.integer(self.every_epoch_up_to, "every_epoch_up_to", low=0)


@dataclass(frozen=True)
class TrainConfig:
    backbone: str = DEFAULT_BACKBONE
    stages: tuple[int, ...] = STAGES
    # Blocks retrained in every stage; the blocks below stay frozen throughout (3.1.2), which
    # is what lets the frozen trunk's features be cached.
    train_blocks: int = DEFAULT_TRAIN_BLOCKS
    seed: int = 0
    eval_short_side: int = 448  # validation descriptors: short side of queries and references
    augment: AugmentConfig = AugmentConfig()
    stage1: ClassificationConfig = ClassificationConfig()
    stage2: FCNConfig = FCNConfig()
    stage3: DescriptorConfig = DescriptorConfig()
    validation: ValidationConfig = ValidationConfig()
    extra: dict[str, Any] = field(default_factory=dict)  # free notes carried into the manifest

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone {self.backbone!r} is not one of {sorted(BACKBONES)}")
        stages = tuple(sorted(set(self.stages)))
        if not stages or any(s not in STAGES for s in stages):
            raise ConfigError(f"stages must be a subset of {STAGES}, got {self.stages!r}")
        object.__setattr__(self, "stages", stages)
        # One seed and one trunk/top split for the whole run, handed down to every stage.
        for name in ("stage1", "stage2", "stage3"):
            stage = getattr(self, name)
            shared = {"seed": self.seed}
            if hasattr(stage, "train_blocks"):
                shared["train_blocks"] = self.train_blocks
            object.__setattr__(self, name, dataclasses.replace(stage, **shared))

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from plain ``data``, refusing unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'configuration'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where or 'configuration'}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        target = typing.get_origin(hint) or hint
        if dataclasses.is_dataclass(target):
            kwargs[key] = _build(target, value, f"{where}.{key}".lstrip("."))
        elif target is tuple and isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where or 'configuration'}: {error}") from error


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file, then ``overrides`` (nested dicts, e.g. from flags)."""
    import yaml

    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read the configuration ({error})") from error
        if loaded is not None:
            if not isinstance(loaded, dict):
                raise ConfigError(f"{path}: expected a mapping at the top level")
            data = loaded
    return _build(TrainConfig, merge(data, overrides or {}), "")


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return _build(TrainConfig, data, "")


def write_config(config: TrainConfig, path: Path) -> None:
    import yaml

    from muselens.core.files import write_whole

    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    write_whole(path, lambda f: f.write(text.encode()))

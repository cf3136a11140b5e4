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
from muselens.training.loader_workers import AUTO
from muselens.training.stages.classification import ClassificationConfig
from muselens.training.stages.region_descriptor import DescriptorConfig
from muselens.training.stages.fcn import FCNConfig
from muselens.training.view_pool import ViewPoolConfig

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
    # stages 1-2 draw their augmented photos from a pool put through the frozen trunk once
    view_pool: ViewPoolConfig = ViewPoolConfig()
    # threads that draw and prepare photos for the trunk (-1: 0 on the CPU, where the trunk needs
    # every core; min(8, cores - 1) on a GPU, which one thread alone cannot keep busy)
    loader_workers: int = AUTO
    extra: dict[str, Any] = field(default_factory=dict)  # free notes carried into the manifest

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone {self.backbone!r} is not one of {sorted(BACKBONES)}")
        if isinstance(self.loader_workers, bool) or not isinstance(self.loader_workers, int) \
                or self.loader_workers < AUTO:
            raise ConfigError(f"loader_workers must be an integer >= 0, or -1 to pick by device; got "
                              f"{self.loader_workers!r}")
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


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None, *,
                base: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then ``base`` (a schedule), then the YAML file, then ``overrides`` (nested dicts,
    e.g. from flags)."""
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
    return _build(TrainConfig, merge(merge(base or {}, data), overrides or {}), "")


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return _build(TrainConfig, data, "")


def write_config(config: TrainConfig, path: Path) -> None:
    import yaml

    from muselens.core.files import write_whole

    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    write_whole(path, lambda f: f.write(text.encode()))


# -- the configuration's flags: muselens train and muselens retrain choose a run's configuration alike


def parse_setting(text: str) -> tuple[list[str], Any]:
    """One ``KEY=VALUE`` setting (``stage1.epochs=5``): the dotted key's path and the value read as YAML."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"--set wants KEY=VALUE (e.g. stage1.epochs=5), got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def config_overrides(settings: typing.Iterable[tuple[typing.Sequence[str], Any]] = (), *, backbone: str | None = None,
                     stages: str | None = None, seed: int | None = None) -> dict[str, Any]:
    """The nested overrides :func:`load_config` applies: each :func:`parse_setting` result, then the
    named settings that are given (``stages`` as ``"1,2,3"``)."""
    out: dict[str, Any] = {}
    for path, value in settings:
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    if backbone:
        out["backbone"] = backbone
    if stages:
        out["stages"] = [int(s) for s in stages.split(",")]
    if seed is not None:
        out["seed"] = seed
    return out


def setting_argument(text: str) -> tuple[list[str], Any]:
    """:func:`parse_setting` as an argparse ``type`` (its message shown as the usage error)."""
    import argparse

    try:
        return parse_setting(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_config_arguments(parser) -> None:
    """``--schedule``, ``--config``, ``--backbone``, ``--seed`` and ``--set``: a named schedule, a
    YAML file per museum, then single settings."""
    from muselens.training.schedules import SCHEDULES

    parser.add_argument("--schedule", choices=sorted(SCHEDULES),
                        help="named settings under --config and --set (default: cpu on a CPU: the paper's "
                             "30/10/6 epochs at short side 320; full on CUDA: the paper's settings)")
    parser.add_argument("--config", type=Path, help="museum.yaml with any TrainConfig fields")
    parser.add_argument("--backbone", choices=sorted(BACKBONES))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--set", type=setting_argument, action="append", metavar="KEY=VALUE",
                        help="override one setting, e.g. --set stage1.epochs=5 (repeatable)")


def default_schedule(device: str) -> str:
    """The schedule a run gets unless it names one: the paper's epochs at a size 2 cores train in
    minutes, or the paper's settings whole on a GPU."""
    return "full" if str(device).startswith("cuda") else "cpu"


def config_from_args(args, *, stages: str | None = None) -> TrainConfig:
    """The configuration :func:`add_config_arguments`' flags choose (``stages``: ``"1,2,3"`` or all)."""
    from muselens.training.schedules import SCHEDULES

    schedule = getattr(args, "schedule", None) or default_schedule(getattr(args, "device", "cpu"))
    base = merge(SCHEDULES[schedule], {"extra": {"schedule": schedule}})  # the run's config.yaml says which
    return load_config(args.config, config_overrides(args.set or (), backbone=args.backbone, stages=stages,
                                                     seed=args.seed), base=base)

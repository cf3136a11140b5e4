"""The optimiser stages 1 and 2 share: its parameter groups, the cosine schedule, its checks."""

from __future__ import annotations

import pytest

from muselens.training.classifier import set_trainable_blocks
from muselens.training.stages.optimiser import OptimConfig, build_optimizer, cosine_factor


def test_optimizer_groups_and_schedule(model):
    set_trainable_blocks(model, 1)
    optimizer = build_optimizer(model, OptimConfig(lr=0.1, head_lr_mult=10.0, weight_decay=1e-4))
    head_ids = {id(p) for p in model.head.parameters()}
    for group in optimizer.param_groups:
        is_head = all(id(p) in head_ids for p in group["params"])
        assert group["base_lr"] == pytest.approx(1.0 if is_head else 0.1)
        assert (group["weight_decay"] > 0) == all(p.ndim > 1 for p in group["params"])
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(
        p.requires_grad for p in model.parameters())
    assert cosine_factor(0, 10) == 1.0 and cosine_factor(5, 10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="epoch"):
        cosine_factor(10, 10)


def test_arguments_are_checked(model):
    set_trainable_blocks(model, 0)
    for p in model.head.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer(model, OptimConfig(lr=0.1))
    with pytest.raises(ValueError, match="lr"):
        OptimConfig(lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        OptimConfig(lr=0.1, momentum=1.0)

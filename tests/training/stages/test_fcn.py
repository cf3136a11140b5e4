"""Stage 2: equation 3.5 by hand, accumulation equals a batched pass, BatchNorm statistics stay put."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from muselens.core.preprocess import PreprocessContract
from muselens.training.augment import AugmentConfig
from muselens.training.datasets import FCNDataset
from muselens.training.classifier import set_stage_modes, set_trainable_blocks, split_blocks
from muselens.training.stages.optimiser import OptimConfig, build_optimizer
from muselens.training.stages.fcn import (
    FCNConfig,
    accumulate_fcn_gradients,
    fcn_image_loss,
    fcn_location_accuracy,
    fit_fcn,
    step_sizes,
    train_fcn_epoch,
)
from tests.training.stages.conftest import colour_images

CONTRACT = PreprocessContract(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _hand_ce(logits: list[float], label: int) -> float:
    return -(logits[label] - math.log(sum(math.exp(v) for v in logits)))


def test_fcn_loss_is_the_mean_over_locations_then_over_scales():
    big = torch.tensor([[[[1.0, 0.0], [2.0, -1.0]],
                         [[0.5, 0.5], [0.0, 3.0]],
                         [[-1.0, 2.0], [1.0, 0.0]]]])  # (1, 3 classes, 2, 2)
    small = torch.tensor([[[[0.3]], [[-0.2]], [[1.5]]]])  # (1, 3, 1, 1)
    label = 1
    big_locations = [_hand_ce([float(big[0, c, h, w]) for c in range(3)], label) for h in range(2) for w in range(2)]
    small_location = _hand_ce([0.3, -0.2, 1.5], label)
    expected = (sum(big_locations) / 4 + small_location) / 2  # each scale weighs the same
    assert float(fcn_image_loss([big, small], label)) == pytest.approx(expected, rel=1e-6)
    assert float(fcn_image_loss([big], label)) == pytest.approx(sum(big_locations) / 4, rel=1e-6)
    # argmax per location of `big`: (0,0)->0, (0,1)->2, (1,0)->0, (1,1)->1; of `small`: 2
    assert fcn_location_accuracy([big, small], 1) == pytest.approx((1 / 4 + 0) / 2)


def test_fcn_loss_checks_its_inputs():
    with pytest.raises(ValueError, match="label"):
        fcn_image_loss([torch.zeros(1, 3, 2, 2)], 3)
    with pytest.raises(ValueError, match="one image"):
        fcn_image_loss([torch.zeros(2, 3, 2, 2)], 0)
    with pytest.raises(ValueError, match="same number of classes"):
        fcn_image_loss([torch.zeros(1, 3, 2, 2), torch.zeros(1, 4, 2, 2)], 0)
    with pytest.raises(ValueError, match="non-empty"):
        fcn_image_loss([], 0)


def test_micro_batches_accumulate_to_the_batched_gradient(model):
    set_trainable_blocks(model, 2)
    set_stage_modes(model, 2, bn="frozen")
    torch.manual_seed(0)
    images = torch.randn(3, 3, 64, 96)
    labels = [0, 2, 1]
    accumulate_fcn_gradients(model, [((images[i],), labels[i]) for i in range(3)], torch.device("cpu"))
    accumulated = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    dense = model.dense_logits(images)  # (3, C, 2, 3): all images the same size
    target = torch.tensor(labels)[:, None, None].expand(3, dense.shape[2], dense.shape[3])
    F.cross_entropy(dense, target).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            # float32 sums in another order: compare against the gradient's own scale
            scale = float(p.grad.abs().max())
            torch.testing.assert_close(accumulated[name], p.grad, rtol=1e-4, atol=1e-4 * scale, msg=name)
    assert any(float(g.abs().max()) > 0 for g in accumulated.values())


def test_an_epoch_keeps_batchnorm_statistics_and_trains_the_top_blocks(model):
    set_trainable_blocks(model, 2)
    frozen, trainable = split_blocks(model, 2)
    optimizer = build_optimizer(model, OptimConfig(lr=0.01, head_lr_mult=1.0))
    bn_before = [t.clone() for bn in model.modules() if isinstance(bn, _BatchNorm)
                 for t in (bn.running_mean, bn.running_var, bn.num_batches_tracked)]
    frozen_before = [p.clone() for b in frozen for p in b.parameters()]
    top_before = [p.clone() for b in trainable for p in b.parameters()]
    dataset = FCNDataset(colour_images(2), CONTRACT, short_sides=(64, 32), augment_config=AugmentConfig(), seed=0)
    steps = []
    original_step = optimizer.step
    optimizer.step = lambda *a, **k: (steps.append(1), original_step(*a, **k))[1]
    stats = train_fcn_epoch(model, dataset, optimizer, images_per_step=4, train_blocks=2, device="cpu",
                            progress=False)
    assert len(steps) == 2 and stats.images == 6  # 6 images in steps of 4 and 2
    assert np.isfinite(stats.loss) and 0.0 <= stats.accuracy <= 1.0
    bn_after = [t for bn in model.modules() if isinstance(bn, _BatchNorm)
                for t in (bn.running_mean, bn.running_var, bn.num_batches_tracked)]
    assert all(torch.equal(a, b) for a, b in zip(bn_before, bn_after))
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, [p for b in frozen for p in b.parameters()]))
    moved = [not torch.equal(a, b) for a, b in zip(top_before, [p for b in trainable for p in b.parameters()])]
    assert sum(moved) > len(moved) // 2


def test_fit_fcn_runs_the_configured_epochs_and_checks_the_dataset(model):
    config = FCNConfig(train_blocks=1, epochs=2, images_per_step=3, short_sides=(32,), max_aspect=2.0)
    set_trainable_blocks(model, config.train_blocks)
    optimizer = build_optimizer(model, config.optim)
    dataset = FCNDataset(colour_images(1), CONTRACT, short_sides=(32,), augment_config=None)
    seen = []
    history = fit_fcn(model, optimizer, dataset, config, device="cpu", progress=False, on_epoch_end=seen.append)
    assert [h.epoch for h in history] == [0, 1] and seen == history
    assert history[1].lr == pytest.approx(0.001 * 0.5)  # cosine at epoch 1 of 2
    with pytest.raises(ValueError, match="short sides"):
        fit_fcn(model, optimizer, FCNDataset(colour_images(1), CONTRACT, short_sides=(64,)), config, device="cpu")
    with pytest.raises(TypeError, match="FCNDataset"):
        fit_fcn(model, optimizer, [], config, device="cpu")


def test_step_sizes_and_config_checks():
    assert step_sizes(10, 4) == [4, 4, 2]
    assert step_sizes(8, 4) == [4, 4]
    assert step_sizes(0, 4) == []
    with pytest.raises(ValueError, match="images_per_step"):
        step_sizes(10, 0)
    with pytest.raises(ValueError, match="short side"):
        FCNConfig(short_sides=(448, 0))
    with pytest.raises(ValueError, match="images_per_step"):
        FCNConfig(images_per_step=0)
    assert FCNConfig().to_dict()["short_sides"] == [448, 224]

"""Stage 1: which parameters learn, BatchNorm statistics, the loss falls, resuming is exact."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from muselens.core.preprocess import PreprocessContract
from muselens.training.augment import AugmentConfig
from muselens.training.datasets import ClassificationDataset
from muselens.training.classifier import InstanceClassifier, set_trainable_blocks, split_blocks
from muselens.training.stages.classification import (
    ClassificationConfig,
    evaluate_accuracy,
    fit_classification,
    train_epoch,
)
from muselens.training.stages.optimiser import OptimConfig, build_optimizer
from tests.training.stages.conftest import colour_images

CONTRACT = PreprocessContract(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
MILD = AugmentConfig(max_rotation=10.0, crop_p=0.0, hue=0.0)


def _snapshot(modules) -> list[torch.Tensor]:
    return [t.detach().clone() for m in modules for t in list(m.parameters()) + list(m.buffers())]


def _bn_stats(modules) -> list[torch.Tensor]:
    return [t.clone() for m in modules for bn in m.modules() if isinstance(bn, _BatchNorm)
            for t in (bn.running_mean, bn.running_var)]


def _changed(before, after) -> list[bool]:
    return [not torch.equal(a, b) for a, b in zip(before, after)]


def test_a_step_changes_only_the_top_blocks_and_their_batchnorm_statistics(model):
    set_trainable_blocks(model, 2)
    frozen, trainable = split_blocks(model, 2)
    optimizer = build_optimizer(model, OptimConfig(lr=0.05))
    dataset = ClassificationDataset(colour_images(2), CONTRACT, size=64, augment_config=None)
    frozen_before, top_before = _snapshot(frozen), _snapshot(trainable)
    bn_top_before = _bn_stats(trainable)
    imagenet_head = model.backbone.classifier.weight.clone()
    head_before = model.head.weight.clone()
    train_epoch(model, dataset, optimizer, batch_size=6, train_blocks=2, device="cpu", progress=False)
    assert not any(_changed(frozen_before, _snapshot(frozen)))
    assert all(_changed(bn_top_before, _bn_stats(trainable)))  # statistics re-estimated on the museum
    assert sum(_changed(top_before, _snapshot(trainable))) > len(top_before) // 2
    assert not torch.equal(head_before, model.head.weight)
    assert torch.equal(imagenet_head, model.backbone.classifier.weight)


def test_loss_falls_on_an_easy_problem(model):
    config = ClassificationConfig(train_blocks=3, epochs=5, batch_size=6, image_size=48,
                                  optim=OptimConfig(lr=0.001, cosine=False), seed=0)
    set_trainable_blocks(model, config.train_blocks)
    optimizer = build_optimizer(model, config.optim)
    dataset = ClassificationDataset(colour_images(4), CONTRACT, size=48, augment_config=MILD, seed=0)
    history = fit_classification(model, optimizer, dataset, config, device="cpu", progress=False)
    assert [h.epoch for h in history] == [0, 1, 2, 3, 4]
    assert history[-1].loss < 0.5 * history[0].loss and history[-1].accuracy > 0.8
    assert history[0].images == 12


def test_resuming_reproduces_an_uninterrupted_run(_lite0):
    def fresh():
        m = InstanceClassifier(copy.deepcopy(_lite0), ["a", "b", "c"], seed=0)
        set_trainable_blocks(m, config.train_blocks)
        return m, build_optimizer(m, config.optim)

    config = ClassificationConfig(train_blocks=2, epochs=3, batch_size=4, image_size=32,
                                  optim=OptimConfig(lr=0.02), seed=1)
    dataset = ClassificationDataset(colour_images(2), CONTRACT, size=32, augment_config=AugmentConfig(), seed=1)
    straight, opt = fresh()
    saved: dict = {}

    def save(stats):
        saved[stats.epoch] = (copy.deepcopy(straight.state_dict()), copy.deepcopy(opt.state_dict()))

    full = fit_classification(straight, opt, dataset, config, device="cpu", progress=False, on_epoch_end=save)
    resumed, opt2 = fresh()
    resumed.load_state_dict(saved[1][0])
    opt2.load_state_dict(saved[1][1])
    tail = fit_classification(resumed, opt2, dataset, config, device="cpu", start_epoch=2, progress=False)
    assert tail[0].loss == pytest.approx(full[2].loss, rel=1e-5)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_evaluate_accuracy_reports_loss_and_top1(model):
    dataset = ClassificationDataset(colour_images(2), CONTRACT, size=32, augment_config=None)
    stats = evaluate_accuracy(model, DataLoader(dataset, batch_size=4), device="cpu", progress=False)
    assert stats.images == 6 and 0.0 <= stats.accuracy <= 1.0 and stats.loss > 0
    assert not model.training


def test_arguments_are_checked(model):
    set_trainable_blocks(model, 0)
    for p in model.head.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="batch_size"):
        ClassificationConfig(batch_size=0)
    with pytest.raises(TypeError, match="ClassificationDataset"):
        train_epoch(model, [1, 2], None, batch_size=2, train_blocks=0, device="cpu")
    dataset = ClassificationDataset(colour_images(1), CONTRACT, size=32, augment_config=None)
    with pytest.raises(ValueError, match="train_blocks"):
        train_epoch(model, dataset, None, batch_size=2, train_blocks=50, device="cpu")
    with pytest.raises(ValueError, match="start_epoch"):
        fit_classification(model, None, dataset, ClassificationConfig(epochs=2), device="cpu", start_epoch=3)

"""Both stages on a CUDA device: a step runs there and BatchNorm behaves as on CPU (run on the lent GPU)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from muselens.core.preprocess import PreprocessContract
from muselens.training.datasets import ClassificationDataset, FCNDataset
from muselens.training.classifier import set_trainable_blocks
from muselens.training.stages.classification import train_epoch
from muselens.training.stages.optimiser import OptimConfig, build_optimizer
from muselens.training.stages.fcn import train_fcn_epoch
from tests.training.stages.conftest import colour_images

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CONTRACT = PreprocessContract(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _running_means(model) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in model.modules() if isinstance(m, _BatchNorm)]


def test_both_stages_train_on_cuda(model):
    model.to("cuda")
    set_trainable_blocks(model, 2)
    optimizer = build_optimizer(model, OptimConfig(lr=0.001))
    images = colour_images(2)
    stage1 = ClassificationDataset(images, CONTRACT, size=64)
    before = _running_means(model)
    stats = train_epoch(model, stage1, optimizer, batch_size=6, train_blocks=2, device="cuda", progress=False)
    assert stats.images == 6 and torch.isfinite(torch.tensor(stats.loss))
    after_stage1 = _running_means(model)
    assert any(not torch.equal(a, b) for a, b in zip(before, after_stage1))
    stage2 = FCNDataset(images, CONTRACT, short_sides=(96, 64))
    stats = train_fcn_epoch(model, stage2, optimizer, images_per_step=3, train_blocks=2, device="cuda",
                            progress=False)
    assert stats.images == 6 and torch.isfinite(torch.tensor(stats.loss))
    assert all(torch.equal(a, b) for a, b in zip(after_stage1, _running_means(model)))
    assert next(model.parameters()).device.type == "cuda"

"""Stage 1 (paper 004, 3.1): fine-tune the backbone's top blocks to classify artworks.

Each artwork is a class; the network is the ImageNet backbone plus a new linear head
(:class:`~muselens.training.classifier.InstanceClassifier`), trained with softmax cross-entropy on
augmented, fixed-size reference photos. Only the top ``train_blocks`` backbone blocks and the
head learn (3.1.2); those blocks' BatchNorm layers run in train mode so that their running
statistics are re-estimated on the museum, which stage 2 then keeps frozen (3.4.1).

The optimiser (:mod:`muselens.training.stages.optimiser`) is the one stage 2 uses too; all
training state is ``(model, optimizer, epoch)``: the lead saves those three and resumes with
``fit_classification(..., start_epoch=epoch + 1)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from muselens.core import checks
from muselens.training.datasets import ClassificationDataset, epoch_order
from muselens.training.distributed import Distributed
from muselens.training.classifier import (DEFAULT_TRAIN_BLOCKS, InstanceClassifier, check_train_blocks, resolve_device,
                                     set_stage_modes, split_blocks)
from muselens.training.stages.epoch_stats import EpochStats
from muselens.training.stages.optimiser import OptimConfig, apply_lr_schedule
from muselens.training.view_pool import PooledViews

@dataclass(frozen=True)
class ClassificationConfig:
    """Stage 1 settings; ``to_dict`` is written beside the outputs."""

    train_blocks: int = DEFAULT_TRAIN_BLOCKS
    epochs: int = 30
    batch_size: int = 32
    image_size: int = 224
    optim: OptimConfig = OptimConfig(lr=0.01)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "image_size"):
            checks.positive_int(getattr(self, name), name)
        checks.integer(self.train_blocks, "train_blocks", low=0)
        if not isinstance(self.optim, OptimConfig):
            raise TypeError(f"optim must be an OptimConfig, got {type(self.optim).__name__}")
        checks.integer(self.seed, "seed", low=0)

    def to_dict(self) -> dict:
        return asdict(self)


def train_epoch(
    model: InstanceClassifier,
    dataset: ClassificationDataset | PooledViews,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    train_blocks: int,
    device: torch.device | str,
    epoch: int = 0,
    num_workers: int = 0,
    progress: bool = True,
    dist: Distributed | None = None,
) -> EpochStats:
    """One pass of softmax cross-entropy over ``dataset``, in the batches and augmentation draws
    of ``(dataset.seed, epoch)``; returns the epoch's mean loss and accuracy.

    ``dataset`` is either augmented photos or :class:`~muselens.training.view_pool.PooledViews`:
    pooled trunk features, of which only the blocks above the trunk run.

    Frozen blocks run in eval mode, the top ``train_blocks`` in train mode (see
    :func:`~muselens.training.classifier.set_stage_modes`). The model must already be on ``device``.
    With ``dist`` of several ranks each batch is split across them: every rank back-propagates
    ``sum of its losses / batch size`` and :meth:`~Distributed.sync_gradients` sums them, so a
    step follows the whole batch's mean loss; the retrained blocks' BatchNorm running statistics
    are averaged over the ranks at the end. Loss and accuracy are over all ranks' images."""
    if not isinstance(dataset, (ClassificationDataset, PooledViews)):
        raise TypeError(f"dataset must be a ClassificationDataset or PooledViews, got {type(dataset).__name__}")
    check_train_blocks(model, train_blocks)
    start_block = getattr(dataset, "start_block", 0)
    checks.positive_int(batch_size, "batch_size")
    dev = resolve_device(model, device)
    dist = dist if dist is not None else Distributed.single(dev)
    set_stage_modes(model, train_blocks, bn="trainable_blocks")
    dataset.set_epoch(epoch)
    order = epoch_order(len(dataset), dataset.seed, epoch)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if not batches:
        raise ValueError("the dataset holds no images")
    mine = [dist.shard(batch) for batch in batches]
    # A rank whose share of a (last, short) batch is empty still joins that step's all-reduce.
    loader = DataLoader(dataset, batch_sampler=[m for m in mine if m], num_workers=num_workers)
    items = iter(loader)
    start = time.perf_counter()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(list(zip(batches, mine)), desc=f"stage 1 epoch {epoch}", unit="batch",
               disable=not (progress and dist.is_main), leave=False)
    for batch, share in bar:
        optimizer.zero_grad(set_to_none=True)
        if share:
            x, y = next(items)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            logits = model.logits(x, start_block)
            loss_sum = F.cross_entropy(logits, y, reduction="sum")
            (loss_sum / len(batch)).backward()
            total_loss += float(loss_sum.detach())
            correct += int((logits.detach().argmax(dim=1) == y).sum())
            seen += y.shape[0]
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        dist.sync_gradients(optimizer)
        optimizer.step()
    _, trainable = split_blocks(model, train_blocks)
    dist.average_buffers(trainable)
    total_loss, correct, seen = dist.all_reduce_sum(
        torch.tensor([total_loss, correct, seen], dtype=torch.float64)).tolist()
    return EpochStats(epoch, total_loss / seen, correct / seen, int(seen), time.perf_counter() - start,
                      optimizer.param_groups[0]["lr"])


@dataclass(frozen=True)
class EvalStats:
    loss: float
    accuracy: float
    images: int


@torch.no_grad()
def evaluate_accuracy(model: InstanceClassifier, loader: DataLoader, *, device: torch.device | str,
                      progress: bool = True) -> EvalStats:
    """Mean cross-entropy and top-1 accuracy of the pooled logits, model in eval mode.

    Leaves the model in eval mode; the training functions set their own modes on entry.
    """
    if not isinstance(model, InstanceClassifier):
        raise TypeError(f"model must be an InstanceClassifier, got {type(model).__name__}")
    dev = resolve_device(model, device)
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in tqdm(loader, desc="evaluate", unit="batch", disable=not progress, leave=False):
        x, y = x.to(dev), y.to(dev)
        logits = model.logits(x)
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(dim=1) == y).sum())
        seen += y.shape[0]
    if seen == 0:
        raise ValueError("the loader yielded no images")
    return EvalStats(total_loss / seen, correct / seen, seen)


def fit_classification(
    model: InstanceClassifier,
    optimizer: torch.optim.Optimizer,
    dataset: ClassificationDataset | PooledViews,
    config: ClassificationConfig,
    *,
    device: torch.device | str,
    start_epoch: int = 0,
    num_workers: int = 0,
    on_epoch_end: Callable[[EpochStats], None] | None = None,
    progress: bool = True,
    dist: Distributed | None = None,
) -> list[EpochStats]:
    """Epochs ``start_epoch .. config.epochs - 1`` of stage 1; ``on_epoch_end`` may checkpoint.

    The caller builds the model (``set_trainable_blocks(model, config.train_blocks)``) and the
    optimizer (:func:`build_optimizer`), moves them to ``device``, and on resume loads their
    state dicts and passes the next epoch; nothing else carries state between epochs.
    With ``dist`` of several ranks, each epoch's batches are split across them.
    """
    if not isinstance(config, ClassificationConfig):
        raise TypeError(f"config must be a ClassificationConfig, got {type(config).__name__}")
    checks.integer(start_epoch, "start_epoch", low=0, high=config.epochs)
    history = []
    for epoch in range(start_epoch, config.epochs):
        apply_lr_schedule(optimizer, epoch, config.epochs, config.optim.cosine)
        stats = train_epoch(model, dataset, optimizer, batch_size=config.batch_size, train_blocks=config.train_blocks,
                            device=device, epoch=epoch, num_workers=num_workers, progress=progress, dist=dist)
        history.append(stats)
        if on_epoch_end is not None:
            on_epoch_end(stats)
    return history

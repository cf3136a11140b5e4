"""Stage 2 (paper 004, 3.4.1): fine-tune the classifier as an FCN on whole images at several scales.

The stage-1 head becomes a 1x1 convolution applied at every feature location
(:meth:`~muselens.training.classifier.InstanceClassifier.dense_logits`). An image is shown at its true
aspect ratio at every short side (448 and 224), and its loss is equation 3.5: the softmax
cross-entropy against the image's label at each location, averaged over the locations of a
scale, then averaged over the scales with equal weight (:func:`fcn_image_loss`).

Images differ in shape, so each micro-batch is one image; gradients of ``images_per_step``
micro-batches are accumulated, each scaled by ``1 / images in the step``, before one optimiser
step, so a step follows the mean loss of its mini-batch. A micro-batch of one image cannot
estimate BatchNorm statistics, so every BatchNorm layer stays in eval mode with the statistics
stage 1 estimated, while the top blocks' convolutions and BatchNorm affine parameters learn.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from muselens.core import checks
from muselens.training.datasets import STAGE2_MAX_ASPECT, STAGE2_SHORT_SIDES, FCNDataset, epoch_order
from muselens.training.distributed import Distributed
from muselens.training.classifier import (DEFAULT_TRAIN_BLOCKS, InstanceClassifier, check_train_blocks, resolve_device,
                                     set_stage_modes)
from muselens.training.stages.epoch_stats import EpochStats
from muselens.training.stages.optimiser import OptimConfig, apply_lr_schedule
from muselens.training.view_pool import PooledViews


@dataclass(frozen=True)
class FCNConfig:
    """Stage 2 settings; ``to_dict`` is written beside the outputs.

    The head already learnt in stage 1, so it gets the backbone's rate (``head_lr_mult=1``).
    """

    train_blocks: int = DEFAULT_TRAIN_BLOCKS
    epochs: int = 10
    images_per_step: int = 16
    short_sides: tuple[int, ...] = STAGE2_SHORT_SIDES
    max_aspect: float = STAGE2_MAX_ASPECT
    optim: OptimConfig = OptimConfig(lr=0.001, head_lr_mult=1.0)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "images_per_step"):
            checks.positive_int(getattr(self, name), name)
        checks.integer(self.train_blocks, "train_blocks", low=0)
        sides = tuple(self.short_sides)
        if not sides:
            raise ValueError("short_sides must hold at least one size")
        for s in sides:
            checks.positive_int(s, "each short side")
        object.__setattr__(self, "short_sides", sides)
        if not isinstance(self.optim, OptimConfig):
            raise TypeError(f"optim must be an OptimConfig, got {type(self.optim).__name__}")
        checks.integer(self.seed, "seed", low=0)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["short_sides"] = list(self.short_sides)
        return out


def _check_maps(logit_maps: Sequence[torch.Tensor]) -> None:
    if isinstance(logit_maps, torch.Tensor) or len(logit_maps) == 0:
        raise ValueError("logit_maps must be a non-empty sequence of (1, C, H, W) tensors, one per scale")
    classes = {m.shape[1] if m.ndim == 4 else None for m in logit_maps}
    for m in logit_maps:
        if m.ndim != 4 or m.shape[0] != 1 or m.shape[2] < 1 or m.shape[3] < 1:
            raise ValueError(f"each logit map must be (1, C, H, W) for one image, got {tuple(m.shape)}")
    if len(classes) != 1:
        raise ValueError(f"all scales must have the same number of classes, got {sorted(classes)}")


def _check_label(label: int, num_classes: int) -> int:
    return checks.integer(label, "label", low=0, high=num_classes - 1)


def fcn_image_loss(logit_maps: Sequence[torch.Tensor], label: int) -> torch.Tensor:
    """Equation 3.5 for one image: mean over scales of the mean over locations of the CE with ``label``.

    ``logit_maps`` holds one ``(1, C, H_s, W_s)`` map per scale; shapes may differ.
    """
    _check_maps(logit_maps)
    label = _check_label(label, logit_maps[0].shape[1])
    per_scale = []
    for m in logit_maps:
        target = torch.full((1, m.shape[2], m.shape[3]), label, dtype=torch.long, device=m.device)
        per_scale.append(F.cross_entropy(m, target, reduction="mean"))
    return torch.stack(per_scale).mean()


@torch.no_grad()
def fcn_location_accuracy(logit_maps: Sequence[torch.Tensor], label: int) -> float:
    """Fraction of locations whose argmax is ``label``, averaged over scales like the loss."""
    _check_maps(logit_maps)
    label = _check_label(label, logit_maps[0].shape[1])
    return float(torch.stack([(m.argmax(dim=1) == label).float().mean() for m in logit_maps]).mean())


def accumulate_fcn_gradients(
    model: InstanceClassifier,
    items: Sequence[tuple[Sequence[torch.Tensor], int]],
    device: torch.device,
    *,
    step_images: int | None = None,
    start_block: int = 0,
) -> tuple[list[float], list[float]]:
    """Backpropagate ``fcn_image_loss / step_images`` of each image, one image at a time.

    Adds to the parameters' ``.grad`` (the caller zeroes them before a mini-batch). Each item is
    ``(per-scale tensors (3, H_s, W_s), label)``. ``step_images`` is the number of images in the
    whole optimiser step, ``len(items)`` unless ``items`` is one rank's share of it.
    ``start_block > 0``: the tensors are cached trunk features entering that block.
    Returns each image's loss and location accuracy.
    """
    if len(items) == 0:
        raise ValueError("a mini-batch needs at least one image")
    checks.optional_int(step_images, f"step_images (at least len(items) = {len(items)})", low=len(items))
    losses, accuracies = [], []
    weight = 1.0 / (len(items) if step_images is None else step_images)
    for scales, label in items:
        maps = [model.dense_logits(x.to(device).unsqueeze(0), start_block) for x in scales]
        loss = fcn_image_loss(maps, int(label))
        (loss * weight).backward()
        losses.append(float(loss.detach()))
        accuracies.append(fcn_location_accuracy([m.detach() for m in maps], int(label)))
    return losses, accuracies


def step_sizes(n: int, images_per_step: int) -> list[int]:
    """Images in each optimiser step of an epoch of ``n`` images; the last step takes the rest."""
    checks.positive_int(images_per_step, "images_per_step")
    return [min(images_per_step, n - k) for k in range(0, n, images_per_step)]


def train_fcn_epoch(
    model: InstanceClassifier,
    dataset: FCNDataset | PooledViews,
    optimizer: torch.optim.Optimizer,
    *,
    images_per_step: int,
    train_blocks: int,
    device: torch.device | str,
    epoch: int = 0,
    num_workers: int = 0,
    progress: bool = True,
    dist: Distributed | None = None,
) -> EpochStats:
    """One pass over ``dataset`` in the order of ``(dataset.seed, epoch)``, stepping every
    ``images_per_step`` images; all BatchNorm layers stay in eval mode. Returns the mean
    per-image loss (eq. 3.5) and location accuracy. The model must already be on ``device``.

    With ``dist`` of several ranks the images of each step are split across them: each rank
    accumulates its images' ``loss / images in the step`` and :meth:`~Distributed.sync_gradients`
    sums them, so every step takes the single-process gradient (BatchNorm is frozen and an item's
    augmentation does not depend on the rank). Loss and accuracy are over all ranks' images."""
    if not isinstance(dataset, (FCNDataset, PooledViews)):
        raise TypeError(f"dataset must be an FCNDataset or PooledViews, got {type(dataset).__name__}")
    check_train_blocks(model, train_blocks)
    dev = resolve_device(model, device)
    dist = dist if dist is not None else Distributed.single(dev)
    sizes = step_sizes(len(dataset), images_per_step)
    if not sizes:
        raise ValueError("the dataset holds no images")
    set_stage_modes(model, train_blocks, bn="frozen")
    dataset.set_epoch(epoch)
    order = epoch_order(len(dataset), dataset.seed, epoch)
    steps = [order[k:k + size] for k, size in zip(range(0, len(order), images_per_step), sizes)]
    mine = [dist.shard(step) for step in steps]
    # batch_size=None: items arrive one image at a time, at their own shapes; workers only prefetch.
    loader = DataLoader(dataset, batch_size=None, sampler=[i for share in mine for i in share],
                        num_workers=num_workers)
    start = time.perf_counter()
    loss_sum, accuracy_sum, seen = 0.0, 0.0, 0
    items = iter(loader)
    bar = tqdm(list(zip(steps, mine)), desc=f"stage 2 epoch {epoch}", unit="step",
               disable=not (progress and dist.is_main), leave=False)
    for step, share in bar:
        group = [next(items) for _ in share]
        optimizer.zero_grad(set_to_none=True)
        if group:  # a rank whose share of a (last, short) step is empty still joins the all-reduce
            step_losses, step_accuracies = accumulate_fcn_gradients(model, group, dev, step_images=len(step),
                                                                    start_block=getattr(dataset, "start_block", 0))
            loss_sum += sum(step_losses)
            accuracy_sum += sum(step_accuracies)
            seen += len(group)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{accuracy_sum / seen:.3f}")
        dist.sync_gradients(optimizer)
        optimizer.step()
    loss_sum, accuracy_sum, seen = dist.all_reduce_sum(
        torch.tensor([loss_sum, accuracy_sum, seen], dtype=torch.float64)).tolist()
    return EpochStats(epoch, loss_sum / seen, accuracy_sum / seen, int(seen), time.perf_counter() - start,
                      optimizer.param_groups[0]["lr"])


def fit_fcn(
    model: InstanceClassifier,
    optimizer: torch.optim.Optimizer,
    dataset: FCNDataset | PooledViews,
    config: FCNConfig,
    *,
    device: torch.device | str,
    start_epoch: int = 0,
    num_workers: int = 0,
    on_epoch_end: Callable[[EpochStats], None] | None = None,
    progress: bool = True,
    dist: Distributed | None = None,
) -> list[EpochStats]:
    """Epochs ``start_epoch .. config.epochs - 1`` of stage 2; see ``fit_classification`` for resuming.

    The model must come out of stage 1 (its BatchNorm statistics are used as they are); the
    caller sets its trainable blocks and builds the optimizer with ``config.optim``.
    With ``dist`` of several ranks, each step's images are split across them.
    """
    if not isinstance(config, FCNConfig):
        raise TypeError(f"config must be an FCNConfig, got {type(config).__name__}")
    if not isinstance(dataset, (FCNDataset, PooledViews)):
        raise TypeError(f"dataset must be an FCNDataset or PooledViews, got {type(dataset).__name__}")
    if (dataset.short_sides, dataset.max_aspect) != (config.short_sides, float(config.max_aspect)):
        raise ValueError(
            f"dataset prepares short sides {dataset.short_sides} with max aspect {dataset.max_aspect}, "
            f"config says {config.short_sides} and {config.max_aspect}"
        )
    checks.integer(start_epoch, "start_epoch", low=0, high=config.epochs)
    history = []
    for epoch in range(start_epoch, config.epochs):
        apply_lr_schedule(optimizer, epoch, config.epochs, config.optim.cosine)
        stats = train_fcn_epoch(model, dataset, optimizer, images_per_step=config.images_per_step,
                                train_blocks=config.train_blocks, device=device, epoch=epoch,
                                num_workers=num_workers, progress=progress, dist=dist)
        history.append(stats)
        if on_epoch_end is not None:
            on_epoch_end(stats)
    return history

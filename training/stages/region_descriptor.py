"""Stage 3 (paper 004, 3.4.2): the region descriptor network, trained with eq. 3.6.

The stage-2 FCN picks the k locations of highest maximal class activation; their conv features
are L2-normalised, shifted, projected, summed and L2-normalised again
(:class:`~muselens.training.regions.RegionDescriptorNet`). The loss is the dot-product triplet
loss (m = 0.1) plus ``alpha`` times the cross-entropy of the k regions. Before each pass every
training descriptor and every dot product is computed and one triplet is mined per positive
pair: semi-hard in the first two passes, hardest after (3.2.3). The alternatives of papers 002
and 003 (P x K batches, triplets formed in the batch) run through the same loop.

Images are not augmented here, so the frozen trunk runs once (:class:`TrunkCache`); each step
runs only the top blocks, one image at a time at its true aspect ratio, as in stage 2, with
BatchNorm statistics frozen.

An artwork with a single photo has no positive pair: mining gives it no triplet and P x K
batches leave it out. Such photos get ``views_per_photo`` augmented phone views
(:class:`~muselens.training.datasets.PhotoViews`), put through the trunk once as the stage
starts, with seeds that depend only on (seed, photo, view), so a resumed run sees the same
views; they join the training set labelled with their artwork (:func:`view_sources` picks the
photos) and the PCA start. By default only artworks with fewer than two readable photos get
them: real second photos are better positives, and views of every photo would multiply stage
3's cost by ``1 + views_per_photo``; ``views_for="all"`` gives every photo views. Validation
uses only the real references and queries.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm import tqdm

from muselens.core import checks
from muselens.training.distributed import Distributed
from muselens.training.losses import LOSSES, RegionRegularisedLoss, build_loss
from muselens.training.mining import mine_triplets, strategy_for_epoch
from muselens.training.regions import RegionDescriptorNet, gather_regions
from muselens.training.stages.epoch_stats import EpochStats
from muselens.training.stages.optimiser import OptimConfig, apply_lr_schedule
from muselens.training.trunk import TrunkCache

log = logging.getLogger(__name__)

VIEWS_FOR = ("one-photo", "all")  # which photos get augmented views (see view_sources)


@dataclass(frozen=True)
class DescriptorConfig:
    """Stage 3 settings; ``to_dict`` is written beside the outputs."""

    epochs: int = 6
    dim: int = 512  # D
    # Regions of highest maximal activation. Paper 004 takes k = 4; on real photos, where the
    # artwork fills much of the frame, 4 of a 10x14 feature map's cells miss most of it:
    # mcv-paintings (short schedule, served) 89.8 mP@1 with k = 4 against 98.4 with k = 32.
    k: int = 32
    loss: str = "triplet-dot"  # thesis; or an alternative from training.losses.LOSSES
    alpha: float = 1.0  # weight of the region cross-entropy (eq. 3.6)
    short_side: int = 448
    max_aspect: float = 2.0
    triplets_per_step: int = 32  # mined triplets per optimiser step (triplet-dot)
    classes_per_batch: int = 8  # P, for the in-batch losses of 002/003
    images_per_class: int = 4  # K
    pca_init: bool = True  # Gordo et al.'s start: shift = -mean, projection = PCA
    grad_cache: bool = True  # same gradients in one image's memory (see step_gradients)
    views_per_photo: int = 3  # augmented views of a photo, so an artwork with one photo has positives
    views_for: str = "one-photo"  # "one-photo": artworks with under two readable photos; "all": every photo
    optim: OptimConfig = OptimConfig(lr=0.001, head_lr_mult=10.0)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "dim", "k", "short_side", "triplets_per_step", "classes_per_batch",
                     "images_per_class"):
            value = getattr(self, name)
            checks.positive_int(value, name)
        checks.integer(self.views_per_photo, "views_per_photo", low=0)
        if self.views_for not in VIEWS_FOR:
            raise ValueError(f"views_for must be one of {VIEWS_FOR}, got {self.views_for!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; expected one of {sorted(LOSSES)}")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def view_sources(labels: np.ndarray, config: DescriptorConfig) -> np.ndarray:
    """Indices of the training photos that get ``config.views_per_photo`` augmented views."""
    labels = np.asarray(labels)
    if config.views_per_photo == 0 or labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    if config.views_for == "all":
        return np.arange(labels.size)
    return np.flatnonzero(np.bincount(labels)[labels] < 2)


def build_stage3_loss(config: DescriptorConfig) -> RegionRegularisedLoss:
    return RegionRegularisedLoss(build_loss(config.loss), alpha=config.alpha)


def set_frozen_bn_train_mode(net: nn.Module) -> None:
    """Train mode for dropout and friends, eval mode for every BatchNorm (one image per pass)."""
    net.train()
    for module in net.modules():
        if isinstance(module, _BatchNorm):
            module.eval()


def run_top(net: RegionDescriptorNet, top: nn.Module, cache: TrunkCache, index: int, device):
    return net.forward_features(top(cache.get(index, device)))


RUN_BATCH = 8  # cached images of one shape through the learnt blocks at once (frozen BatchNorm)


def run_top_rows(net: RegionDescriptorNet, top: nn.Module, cache: TrunkCache, rows, device,
                 batch: int = RUN_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Descriptors ``(R, D)`` and region logits ``(R, k, classes)`` of the cached images ``rows``,
    in their order, run ``batch`` images of one shape at a time."""
    rows = [int(i) for i in rows]
    descriptors: list[torch.Tensor | None] = [None] * len(rows)
    logits: list[torch.Tensor | None] = [None] * len(rows)
    for group in cache.batches(rows, batch):
        out = net.forward_features(top(cache.stack([rows[j] for j in group], device)))
        for n, j in enumerate(group):
            descriptors[j], logits[j] = out.descriptor[n:n + 1], out.region_logits[n:n + 1]
    return torch.cat(descriptors), torch.cat(logits)


@torch.no_grad()
def all_descriptors(net: RegionDescriptorNet, top: nn.Module, cache: TrunkCache, device,
                    dist: Distributed | None = None) -> torch.Tensor:
    """Descriptors ``(N, D)`` of every cached image with the current weights (eval mode);
    with ``dist`` of several ranks each computes its shard and every rank gets them all."""
    was_training = net.training
    net.eval()
    try:
        if dist is not None and dist.enabled:
            return dist.map_rows(len(cache), lambda i: run_top(net, top, cache, i, device).descriptor.cpu())
        return run_top_rows(net, top, cache, range(len(cache)), device)[0].cpu()
    finally:
        net.train(was_training)


@torch.no_grad()
def init_head_from_pca(net: RegionDescriptorNet, top: nn.Module, cache: TrunkCache, device) -> bool:
    """Gordo et al.'s initialisation from the training set's top-k region features."""
    was_training = net.training
    net.eval()
    try:
        feats: list[torch.Tensor | None] = [None] * len(cache)
        with torch.no_grad():
            for group in cache.batches(range(len(cache)), RUN_BATCH):
                fmap = top(cache.stack(group, device))
                regions = gather_regions(fmap, net.forward_features(fmap).locations).cpu()
                for n, i in enumerate(group):
                    feats[i] = regions[n]
        samples = torch.cat(feats)
    finally:
        net.train(was_training)
    if samples.shape[0] - 1 < net.dim or samples.shape[1] < net.dim:
        log.info("PCA initialisation skipped: %d region samples of %d channels cannot give %d "
                 "principal directions; the projection keeps its random start",
                 samples.shape[0], samples.shape[1], net.dim)
        return False
    net.head.init_pca_(samples.to(net.head.shift.device))
    return True


def pk_batches(labels: np.ndarray, classes: int, per_class: int, seed: int, epoch: int) -> list[np.ndarray]:
    """P x K batches covering about one pass over the data, a function of (seed, epoch) only.

    Classes with a single image cannot form a positive pair and are left out. Written here
    rather than taken from pytorch-metric-learning's MPerClassSampler because resuming after a
    kill must replay exactly the same batches, and that sampler draws from global state.
    """
    rng = np.random.default_rng([seed, epoch, 3])
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    usable = [c for c, idx in by_class.items() if len(idx) >= 2]
    if len(usable) < 2:
        raise ValueError("P x K batches need at least two artworks with two readable photos each")
    p = min(classes, len(usable))
    steps = max(1, math.ceil(len(labels) / (p * per_class)))
    batches = []
    for _ in range(steps):
        chosen = rng.choice(usable, size=p, replace=False)
        batch = [rng.choice(by_class[c], size=per_class, replace=len(by_class[c]) < per_class) for c in chosen]
        batches.append(np.concatenate(batch))
    return batches


def triplet_batches(net, top, cache, labels, config: DescriptorConfig, epoch: int, device,
                    dist: Distributed | None = None):
    """Mined triplets of this pass, shuffled and cut into steps of ``triplets_per_step``."""
    descriptors = all_descriptors(net, top, cache, device, dist)
    triplets = mine_triplets(descriptors.numpy(), labels, strategy=strategy_for_epoch(epoch))
    order = np.random.default_rng([config.seed, epoch, 2]).permutation(len(triplets))
    triplets = triplets[order]
    return [triplets[i:i + config.triplets_per_step] for i in range(0, len(triplets), config.triplets_per_step)]


def step_gradients(net, top, cache, rows: np.ndarray, y: torch.Tensor, triplets: torch.Tensor | None,
                   loss_fn: RegionRegularisedLoss, device, *, grad_cache: bool = True) -> tuple[float, torch.Tensor]:
    """Accumulate the gradient of eq. 3.6 over the images ``rows`` into the parameters.

    Direct: every image's graph is kept until one backward (memory grows with the batch: about
    50 MB per 448-px image on the top blocks). ``grad_cache``: forward all without a graph, take
    the loss' gradient with respect to the descriptors and region logits, then re-run each image
    with a graph and back-propagate its share; the same gradient (BatchNorm is frozen and
    nothing is random) in the memory of a few images (:data:`RUN_BATCH`), for one extra forward
    pass per image. Images of one shape run together either way.
    """
    t = None if triplets is None else triplets.to(device)
    if not grad_cache:
        embeddings, region_logits = run_top_rows(net, top, cache, rows, device)
        loss = loss_fn(embeddings, y, region_logits, t)
        loss.backward()
        return loss.item(), region_logits.detach()
    with torch.no_grad():
        embeddings, region_logits = run_top_rows(net, top, cache, rows, device)
    embeddings.requires_grad_()
    region_logits.requires_grad_()
    loss = loss_fn(embeddings, y, region_logits, t)
    d_embeddings, d_logits = torch.autograd.grad(loss, (embeddings, region_logits))
    for group in cache.batches(rows, RUN_BATCH):  # a few images' graphs at a time
        out = net.forward_features(top(cache.stack([rows[j] for j in group], device)))
        surrogate = (out.descriptor * d_embeddings[group]).sum() + (out.region_logits * d_logits[group]).sum()
        surrogate.backward()
    return loss.item(), region_logits.detach()


def sharded_step_gradients(net, top, cache, rows: np.ndarray, y: torch.Tensor, triplets: torch.Tensor | None,
                           loss_fn: RegionRegularisedLoss, device, dist: Distributed, *,
                           grad_cache: bool = True) -> tuple[float, torch.Tensor]:
    """:func:`step_gradients` with the images ``rows`` split across the ranks of ``dist``.

    Each rank runs its share of the images, the descriptors and region logits are gathered so
    every rank computes the whole step's loss, and each rank back-propagates into the parameters
    only its own images' part of it: with ``grad_cache`` by re-running them against the loss'
    gradient, otherwise by splicing its images' graphs into the gathered (constant) rows. The sum
    over the ranks (:meth:`~Distributed.sync_gradients`) is the single-process gradient.
    """
    t = None if triplets is None else triplets.to(device)
    mine = dist.shard(range(len(rows)))

    def row(j: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = run_top(net, top, cache, int(rows[j]), device)
        return out.descriptor, out.region_logits

    if grad_cache:
        with torch.no_grad():
            embeddings, region_logits = dist.map_rows(len(rows), row)
        embeddings.requires_grad_()
        region_logits.requires_grad_()
        loss = loss_fn(embeddings, y, region_logits, t)
        d_embeddings, d_logits = torch.autograd.grad(loss, (embeddings, region_logits))
        for j in mine:
            descriptor, logits = row(j)
            surrogate = (descriptor * d_embeddings[j:j + 1]).sum() + (logits * d_logits[j:j + 1]).sum()
            surrogate.backward()
        return loss.item(), region_logits.detach()
    own = {j: row(j) for j in mine}
    gathered = dist.map_rows(len(rows), lambda j: tuple(x.detach() for x in own[j]))
    index = torch.tensor(mine, dtype=torch.long, device=gathered[0].device)
    spliced = [full.index_put((index,), torch.cat([own[j][c] for j in mine])) if mine else full
               for c, full in enumerate(gathered)]
    loss = loss_fn(spliced[0], y, spliced[1], t)
    if mine:
        loss.backward()
    return loss.item(), spliced[1].detach()


def train_descriptor_epoch(
    net: RegionDescriptorNet,
    top: nn.Module,
    cache: TrunkCache,
    labels: np.ndarray,
    loss_fn: RegionRegularisedLoss,
    optimizer: torch.optim.Optimizer,
    config: DescriptorConfig,
    *,
    epoch: int,
    device,
    progress: bool = True,
    dist: Distributed | None = None,
) -> EpochStats:
    sharded = dist is not None and dist.enabled
    start = time.perf_counter()
    if loss_fn.requires_triplets:
        steps = triplet_batches(net, top, cache, labels, config, epoch, device, dist)
    else:
        steps = pk_batches(labels, config.classes_per_batch, config.images_per_class, config.seed, epoch)
    set_frozen_bn_train_mode(net)
    losses, accuracies, images = [], [], 0
    bar = tqdm(steps, desc=f"stage 3 epoch {epoch}", unit="step",
               disable=not progress or (sharded and not dist.is_main), file=sys.stderr)
    for step in bar:
        if loss_fn.requires_triplets:
            distinct, local = np.unique(step.reshape(-1), return_inverse=True)
            triplets = torch.from_numpy(local.reshape(-1, 3))
        else:
            distinct, triplets = step, None
        y = torch.as_tensor(labels[distinct], device=device)
        optimizer.zero_grad(set_to_none=True)
        if sharded:
            loss, region_logits = sharded_step_gradients(net, top, cache, distinct, y, triplets, loss_fn,
                                                         device, dist, grad_cache=config.grad_cache)
            dist.sync_gradients(optimizer)
        else:
            loss, region_logits = step_gradients(net, top, cache, distinct, y, triplets, loss_fn, device,
                                                 grad_cache=config.grad_cache)
        optimizer.step()
        losses.append(loss)
        accuracies.append((region_logits.detach().argmax(-1) == y[:, None]).float().mean().item())
        images += len(distinct)
        bar.set_postfix(loss=f"{np.mean(losses):.3f}")
    return EpochStats(epoch, float(np.mean(losses)) if losses else 0.0,
                      float(np.mean(accuracies)) if accuracies else 0.0, images,
                      time.perf_counter() - start, optimizer.param_groups[0]["lr"])


def build_descriptor_optimizer(net: RegionDescriptorNet, top: nn.Module, optim: OptimConfig) -> torch.optim.SGD:
    """SGD over the top blocks, the FCN classifier and the region head (head at the higher rate)."""
    head_params = list(net.head.parameters())
    body_params = [p for p in list(top.parameters()) + list(net.classifier.parameters()) if p.requires_grad]
    groups = []
    for params, mult in ((body_params, 1.0), (head_params, optim.head_lr_mult)):
        decayed = [p for p in params if p.ndim > 1]
        plain = [p for p in params if p.ndim <= 1]
        for ps, wd in ((decayed, optim.weight_decay), (plain, 0.0)):
            if ps:
                lr = optim.lr * mult
                groups.append({"params": ps, "lr": lr, "base_lr": lr, "weight_decay": wd})
    return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum)


def fit_descriptor(
    net: RegionDescriptorNet,
    top: nn.Module,
    cache: TrunkCache,
    labels: np.ndarray,
    optimizer: torch.optim.Optimizer,
    config: DescriptorConfig,
    *,
    device,
    start_epoch: int = 0,
    on_epoch_end: Callable[[EpochStats], None] | None = None,
    progress: bool = True,
    dist: Distributed | None = None,
) -> list[EpochStats]:
    """Epochs ``start_epoch .. config.epochs - 1`` of stage 3. State between epochs is only
    (net, optimizer, epoch): mining and batches are functions of (weights, seed, epoch).
    With ``dist`` of several ranks, mining and each step's gradient are shared among them."""
    if len(cache) != len(labels):
        raise ValueError(f"{len(cache)} cached images but {len(labels)} labels")
    if len(labels) == 0 or np.bincount(np.asarray(labels)).max() < 2:
        raise ValueError("stage 3 has no positive pair: every artwork has a single training image "
                         "(set stage3.views_per_photo >= 1 to draw positives from augmented views)")
    loss_fn = build_stage3_loss(config)
    history = []
    for epoch in range(start_epoch, config.epochs):
        apply_lr_schedule(optimizer, epoch, config.epochs, config.optim.cosine)
        stats = train_descriptor_epoch(net, top, cache, labels, loss_fn, optimizer, config,
                                       epoch=epoch, device=device, progress=progress, dist=dist)
        history.append(stats)
        if on_epoch_end is not None:
            on_epoch_end(stats)
    return history

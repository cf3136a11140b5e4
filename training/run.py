"""A training run: stages 1-3 of paper 004 over one museum, checkpointed every epoch.

Everything a run writes lives in its folder::

    RUN/config.yaml        the resolved configuration
    RUN/checkpoint.pt      latest state (weights-only loadable), replaced atomically every epoch
    RUN/model.pt           the final weights, RUN/model.json what is needed to rebuild them
    RUN/history.json       per-epoch loss, accuracy, validation mP@1 / mAP (on the epochs validated,
                           see ValidationConfig); per-stage time, validation time, memory
    RUN/curves.png         the training curves

A run killed at any point resumes with ``resume=True`` from the last finished epoch and, as
every random draw is a function of (seed, stage, epoch, item), reaches the same result.

Given a :class:`~muselens.training.distributed.Distributed` context of several ranks (torchrun),
every rank trains its share and only rank 0 writes the files above and prints; see
:mod:`muselens.training.distributed` for what is shared and what stays exact.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from muselens.core.data.museum_dataset import MuseumDataset
from muselens.core.metrics import evaluate_retrieval, instance_average, similarity
from muselens.training.backbones.backbone_registry import build_backbone
from muselens.core.files import write_whole
from muselens.training.checkpoint import load_checkpoint, save_checkpoint
from muselens.training.train_config import TrainConfig, ValidationConfig, config_from_dict, write_config
from muselens.training.datasets import (ClassificationDataset, FCNDataset, InstanceLabels,
                                        LabelledImages, PhotoViews, load_labelled_images)
from muselens.training.distributed import Distributed
from muselens.training.loader_workers import resolve_workers
from muselens.training.peak_memory import peaks, reset_peaks
from muselens.training.classifier import InstanceClassifier, run_channels_last, set_trainable_blocks, split_blocks
from muselens.training.pooling.functional import gem
from muselens.training.regions import RegionDescriptorNet
from muselens.training.stages.classification import fit_classification
from muselens.training.stages.epoch_stats import EpochStats
from muselens.training.stages.optimiser import build_optimizer
from muselens.training.stages.region_descriptor import (RUN_BATCH, build_descriptor_optimizer, fit_descriptor,
                                                 init_head_from_pca, view_sources)
from muselens.training.stages.fcn import fit_fcn
from muselens.training.trunk import TrunkCache
from muselens.training.view_pool import PoolShape, PooledViews, TrunkViewPool

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "muselens-train-checkpoint/1"
STAGE3_START = "before-stage-3.pt"  # the run as stage 3 begins, for stage-3 variants to start from


@dataclass
class MuseumModel:
    """The one network all stages share: the instance classifier (stages 1-2) and the region
    descriptor network built on the same backbone and head (stage 3)."""

    classifier: InstanceClassifier
    net: RegionDescriptorNet

    @classmethod
    def build(cls, config: TrainConfig, instance_ids: list[str], *, pretrained: bool = True) -> MuseumModel:
        backbone = build_backbone(config.backbone, pretrained=pretrained)
        classifier = InstanceClassifier(backbone, instance_ids, seed=config.seed)
        net = RegionDescriptorNet(backbone, classifier.head, dim=config.stage3.dim, k=config.stage3.k,
                                  if_fewer="repeat")
        return cls(classifier, net)

    def state_dict(self) -> dict[str, Any]:
        return {"classifier": self.classifier.state_dict(), "region_head": self.net.head.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.classifier.load_state_dict(state["classifier"])
        self.net.head.load_state_dict(state["region_head"])

    def to(self, device: torch.device) -> MuseumModel:
        self.classifier.to(device)
        self.net.to(device)
        return self

    def meta(self, config: TrainConfig) -> dict[str, Any]:
        return {**self.classifier.meta(), "dim": self.net.dim, "k": self.net.k,
                "train_blocks": config.train_blocks, "eval_short_side": config.eval_short_side}


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    return device


class Validator:
    """Per-epoch mP@1 / mAP of the queries against the references, on cached trunk features."""

    def __init__(self, top: nn.Module, refs: TrunkCache, ref_labels: np.ndarray,
                 queries: TrunkCache, query_labels: np.ndarray, device: torch.device,
                 dist: Distributed | None = None):
        self.top, self.refs, self.queries = top, refs, queries
        self.ref_labels, self.query_labels, self.device = ref_labels, query_labels, device
        self.dist = dist

    @torch.no_grad()
    def _describe(self, model: MuseumModel, cache: TrunkCache, stage: int) -> np.ndarray:
        def describe(i: int) -> torch.Tensor:
            fmap = self.top(cache.get(i, self.device))
            if stage == 3:
                return model.net.forward_features(fmap).descriptor
            # fine-tuned network as a global descriptor ("FT"): GeM of its last conv layer
            return torch.nn.functional.normalize(gem(fmap), dim=1)

        if self.dist is not None and self.dist.enabled:  # every rank describes a shard, all get all
            return self.dist.map_rows(len(cache), describe).cpu().numpy()
        rows: list[np.ndarray | None] = [None] * len(cache)
        for group in cache.batches(range(len(cache)), RUN_BATCH):  # images of one shape together
            fmap = self.top(cache.stack(group, self.device))
            described = (model.net.forward_features(fmap).descriptor if stage == 3
                         else torch.nn.functional.normalize(gem(fmap), dim=1)).cpu().numpy()
            for n, i in enumerate(group):
                rows[i] = described[n]
        return np.stack(rows)

    def __call__(self, model: MuseumModel, stage: int) -> dict[str, float]:
        if len(self.queries) == 0:
            return {}
        was = (model.classifier.training, model.net.training)
        model.classifier.eval()
        model.net.eval()
        try:
            r = self._describe(model, self.refs, stage)
            q = self._describe(model, self.queries, stage)
        finally:
            model.classifier.train(was[0])
            model.net.train(was[1])
        report = evaluate_retrieval(similarity(q, r), self.query_labels, self.ref_labels)
        avg, avg_labels = instance_average(r, self.ref_labels)
        averaged = evaluate_retrieval(similarity(q, avg), self.query_labels, avg_labels)
        return {"val_mp_at_1": report.mp_at_1, "val_map": report.map, "val_mp_at_1_ia": averaged.mp_at_1}


class ValidationSchedule:
    """Which epochs are validated (:class:`~muselens.training.train_config.ValidationConfig`).

    It reads only the run's history (each validated epoch records ``val_seconds``), so a
    resumed run goes on with the budget it had. An epoch left out carries no ``val_*`` keys.
    """

    def __init__(self, config: ValidationConfig, images: int):
        self.config, self.images = config, images

    @property
    def every_epoch(self) -> bool:
        return self.images <= self.config.every_epoch_up_to

    def wants(self, history: list[dict[str, Any]], stage: int, seconds: float, *, last: bool) -> bool:
        """Whether to validate the epoch of ``stage`` that just trained for ``seconds`` (its
        record not yet in ``history``); ``last``: the stage's final epoch, always validated."""
        if last or self.every_epoch:
            return True
        rows = [h for h in history if h["stage"] == stage]
        spent = sum(h.get("val_seconds", 0.0) for h in rows)
        trained = seconds + sum(h["seconds"] for h in rows)
        measured = [h["val_seconds"] for h in history if "val_seconds" in h]
        if not measured:  # nothing to estimate from yet: this pass is the measurement
            return self.config.budget > 0
        return spent + measured[-1] <= self.config.budget * trained


class TrainingRun:
    def __init__(self, data: Path, out: Path, config: TrainConfig, *, device: str = "cpu",
                 resume: bool = False, progress: bool = True, pretrained: bool = True,
                 distributed: Distributed | None = None):
        self.data, self.out = Path(data), Path(out)
        self.device = _device(device)
        if distributed is not None and distributed.device.type != self.device.type:
            raise ValueError(f"device {device!r} but the distributed context runs on {distributed.device}")
        self.dist = distributed if distributed is not None else Distributed.single(self.device)
        self.device = self.dist.device if distributed is not None else self.device
        self.progress = progress and self.dist.is_main
        self.checkpoint_path = self.out / "checkpoint.pt"
        self.state: dict[str, Any] = {"stage_index": 0, "next_epoch": 0, "history": [], "stages": {}}
        self.pretrained = pretrained
        self._pools: dict[str, dict[str, Any]] = {}
        if resume and self.checkpoint_path.exists():
            saved = load_checkpoint(self.checkpoint_path)
            if saved.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"{self.checkpoint_path}: not a {CHECKPOINT_FORMAT} checkpoint")
            self.config = config_from_dict(json.loads(saved["config"]))
            self.saved = saved
            if self.dist.is_main:
                print(f"resuming {self.out} at stage {self.config.stages[saved['stage_index']] if saved['stage_index'] < len(self.config.stages) else 'done'}, "
                      f"epoch {saved['next_epoch']}", file=sys.stderr)
        else:
            if not resume and self.checkpoint_path.exists():
                raise FileExistsError(f"{self.out} already holds a run: pass --resume to continue it, "
                                      "or choose another --out")
            self.config, self.saved = config, None
        # Every rank has read the checkpoint (or seen there is none) before rank 0 may write one.
        self.dist.barrier()

    # -- data ---------------------------------------------------------------------------
    def _load_data(self) -> None:
        museum = MuseumDataset.load(self.data)
        self.labels = InstanceLabels.from_museum(museum)
        self.train_images: LabelledImages = load_labelled_images(museum.references, self.labels)
        self.query_images: LabelledImages | None = (
            load_labelled_images(museum.queries, self.labels, purpose="validation") if museum.queries else None)
        self.skipped = self.train_images.skipped.to_list() + (
            self.query_images.skipped.to_list() if self.query_images else [])
        for s in self.skipped if self.dist.is_main else []:
            print(f"warning: skipped unreadable image {s['path']}: {s['reason']}", file=sys.stderr)

    # -- checkpoints -------------------------------------------------------------------
    def _save(self, model: MuseumModel, optimizer, stage_index: int, next_epoch: int,
              path: Path | None = None) -> None:
        if not self.dist.is_main:  # the ranks hold the same state; one writes it
            return
        save_checkpoint(path or self.checkpoint_path, {
            "format": CHECKPOINT_FORMAT,
            "data": str(self.data.resolve()),
            "pretrained": self.pretrained,
            "config": json.dumps(self.config.to_dict()),
            "stage_index": stage_index,
            "next_epoch": next_epoch,
            "model": model.state_dict(),
            "optimizer": None if optimizer is None else optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "history": json.dumps(self.state["history"]),
            "stages": json.dumps(self.state["stages"]),
        })

    # -- the run -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_config(self.config, self.out / "config.yaml")
        torch.manual_seed(self.config.seed)
        self._load_data()
        model = MuseumModel.build(self.config, list(self.labels.instance_ids), pretrained=self.pretrained)
        start_stage, start_epoch, optimizer_state = 0, 0, None
        if self.saved is not None:
            model.load_state_dict(self.saved["model"])
            start_stage, start_epoch = self.saved["stage_index"], self.saved["next_epoch"]
            optimizer_state = self.saved["optimizer"]
            torch.set_rng_state(self.saved["torch_rng"])
            self.state["history"] = json.loads(self.saved["history"])
            self.state["stages"] = json.loads(self.saved["stages"])
        model.to(self.device)
        self.dist.broadcast_module(model.classifier)  # every rank starts from rank 0's weights
        self.dist.broadcast_module(model.net.head)
        self.model = model  # the trained network, for callers that inspect it (tests compare ranks)
        set_trainable_blocks(model.classifier, self.config.train_blocks)
        frozen, trainable = split_blocks(model.classifier, self.config.train_blocks)
        trunk, top = nn.Sequential(*frozen), nn.Sequential(*trainable)
        if self.device.type == "cpu":
            run_channels_last(frozen)
            run_channels_last(trainable)
        caches = self._caches(trunk, model.classifier.backbone.contract)
        validate = Validator(top, caches["refs"], np.asarray(self.train_images.labels), caches["queries"],
                             np.asarray(self.query_images.labels if self.query_images else []), self.device,
                             self.dist)
        schedule = ValidationSchedule(self.config.validation, len(caches["refs"]) + len(caches["queries"]))
        if not schedule.every_epoch and len(caches["queries"]):
            self._say(f"validation: {len(caches['refs'])} references and {len(caches['queries'])} queries are "
                      f"validated after an epoch while that costs at most {self.config.validation.budget:.0%} of "
                      "the stage's training time, and after every stage's last epoch")

        for index in range(start_stage, len(self.config.stages)):
            stage = self.config.stages[index]
            first = start_epoch if index == start_stage else 0
            state = optimizer_state if index == start_stage else None
            self._stage(stage, index, first, state, model, trunk, top, caches, validate, schedule)
        summary = {"run": str(self.out), "stages": self.state["stages"], "history": self.state["history"],
                   "skipped": self.skipped, "device": str(self.device)}
        if self.dist.enabled:
            summary["world_size"] = self.dist.world_size
            self.dist.check_same(model.state_dict())  # raises if the ranks drifted apart
        if self.dist.is_main:
            # Each file whole, model.pt last: a run killed in here has no model.pt and resumes to
            # write them all again; a run with model.pt is finished, its other files complete.
            from muselens.training.curves import plot_curves

            meta = {**model.meta(self.config), "data": str(self.data.resolve())}
            write_whole(self.out / "model.json", lambda f: f.write(json.dumps(meta, indent=2).encode()))
            write_whole(self.out / "history.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))
            write_whole(self.out / "curves.png", lambda f: plot_curves(self.state["history"], f))
            write_whole(self.out / "model.pt", lambda f: torch.save(model.state_dict(), f))
        self.dist.barrier()  # no rank reports success before the files exist
        return summary

    @property
    def workers(self) -> int:
        """Threads that draw and prepare photos for the trunk (``TrainConfig.loader_workers``)."""
        return resolve_workers(self.config.loader_workers, self.device)

    def _caches(self, trunk: nn.Module, contract) -> dict[str, TrunkCache]:
        side = self.config.eval_short_side
        kw = dict(short_side=side, max_aspect=self.config.stage3.max_aspect, device=self.device,
                  progress=self.progress, workers=self.workers)
        refs = TrunkCache(trunk, self.train_images.images, contract, desc="trunk: references", **kw)
        queries = TrunkCache(trunk, self.query_images.images if self.query_images else [], contract,
                             desc="trunk: queries", **kw)
        if self.config.stage3.short_side != side:
            raise ValueError("stage3.short_side must equal eval_short_side: both use the cached trunk")
        return {"refs": refs, "queries": queries}

    def _stage3_set(self, trunk: nn.Module, contract, refs: TrunkCache) -> tuple[TrunkCache, np.ndarray]:
        """Stage 3's training images: the references, then augmented views of the photos
        :func:`view_sources` picks (artworks with one photo have no positive pair without them)."""
        cfg = self.config.stage3
        labels = np.asarray(self.train_images.labels)
        counts = np.bincount(labels)
        single, present = int((counts == 1).sum()), int((counts > 0).sum())
        sources = view_sources(labels, cfg)
        if len(sources) == 0:
            if single:
                self._say(f"stage 3: {single} of {present} artworks have one photo and stage3.views_per_photo "
                          "is 0: they have no positive pair", warning=True)
            return refs, labels
        views = PhotoViews(self.train_images, sources.tolist(), cfg.views_per_photo, self.config.augment,
                           self.config.seed)
        if cfg.views_for == "all":
            self._say(f"stage 3: {single} of {present} artworks have one photo: positives are also drawn from "
                      f"{cfg.views_per_photo} augmented views of every photo")
        else:
            self._say(f"stage 3: {single} of {present} artworks have one photo: positives are drawn from "
                      f"{cfg.views_per_photo} augmented views of each photo")
        cache = TrunkCache(trunk, views, contract, short_side=refs.short_side, max_aspect=refs.max_aspect,
                           device=self.device, dtype=refs.dtype, progress=self.progress,
                           desc="trunk: stage-3 views", workers=self.workers)
        return TrunkCache.joined([refs, cache]), np.concatenate([labels, np.asarray(views.labels, dtype=labels.dtype)])

    def _view_pool(self, stage: int, trunk: nn.Module, contract) -> TrunkViewPool:
        """Stage ``stage``'s pool of augmented views through the frozen trunk, built once per run
        (rank 0 builds it in the run folder; the other ranks open it)."""
        cfg = self.config
        epochs = (cfg.stage1 if stage == 1 else cfg.stage2).epochs
        views = min(cfg.view_pool.views(stage), epochs)  # more views than epochs would never be shown
        shape = (PoolShape(square=cfg.stage1.image_size) if stage == 1 else
                 PoolShape(short_sides=cfg.stage2.short_sides, max_aspect=cfg.stage2.max_aspect))
        kwargs = dict(shape=shape, views=views, augment_config=cfg.augment, seed=cfg.seed, stage=stage,
                      phone_share=cfg.view_pool.phone_share, device=self.device, progress=self.progress,
                      workers=self.workers)
        folder = self.out / "view-pool" / f"stage{stage}"
        began = time.perf_counter()
        if self.dist.is_main:
            pool = TrunkViewPool.open_or_build(folder, trunk, self.train_images, contract, **kwargs)
        self.dist.barrier()
        if not self.dist.is_main:
            pool = TrunkViewPool.open_or_build(folder, trunk, self.train_images, contract, **kwargs)
        distinct = pool.distinct_views
        prior = self.state["stages"].get(str(stage), {}).get("view_pool", {}).get("seconds", 0.0)  # a resumed stage
        self._pools[str(stage)] = {"views": views, "distinct_views": distinct, "mib": round(pool.nbytes / 2**20, 1),
                                   "seconds": round(prior + time.perf_counter() - began, 2), "workers": self.workers}
        self._say(f"stage {stage}: {views} pooled views per photo ({pool.nbytes / 2**20:.0f} MiB of trunk features "
                  f"in {folder}, ready in {time.perf_counter() - began:.1f} s, drawn by "
                  f"{self.workers or 'no'} worker thread{'s' * (self.workers != 1)}); over {epochs} epoch"
                  f"{'s' * (epochs != 1)} a photo shows {distinct} distinct augmentation{'s' * (distinct != 1)}")
        return pool

    def _stage_times(self, stage: int, seconds: float) -> dict[str, float]:
        """The stage's wall time so far and the part of it spent validating."""
        spent = sum(h.get("val_seconds", 0.0) for h in self.state["history"] if h["stage"] == stage)
        times = {"seconds": round(seconds, 2), "validation_seconds": round(spent, 2)}
        if str(stage) in self._pools:  # building (or reopening) the stage's view pool, part of its seconds
            times["view_pool"] = self._pools[str(stage)]
        return times

    def _say(self, message: str, *, warning: bool = False) -> None:
        """Print ``message`` on the main rank with the other stage messages, and log it at debug
        level (the command line logs info to the same terminal: it would say everything twice)."""
        log.debug(message)
        if self.dist.is_main:
            print(("warning: " if warning else "") + message, file=sys.stderr)

    def _stage(self, stage: int, index: int, first_epoch: int, optimizer_state, model: MuseumModel,
               trunk: nn.Module, top: nn.Module, caches: dict[str, TrunkCache], validate: Validator,
               schedule: ValidationSchedule) -> None:
        cfg = self.config
        window = reset_peaks(self.device)
        started = time.perf_counter()
        prior_seconds = self.state["stages"].get(str(stage), {}).get("seconds", 0.0)
        contract = model.classifier.backbone.contract
        if stage == 3:
            optimizer = build_descriptor_optimizer(model.net, top, cfg.stage3.optim)
            train3, labels3 = self._stage3_set(trunk, contract, caches["refs"])
        else:
            optimizer = build_optimizer(model.classifier, (cfg.stage1 if stage == 1 else cfg.stage2).optim)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        elif stage == 3 and cfg.stage3.pca_init and first_epoch == 0:
            init_head_from_pca(model.net, top, train3, self.device)  # views too: more region samples
            self.dist.broadcast_module(model.net.head)  # one PCA for all ranks, bit for bit

        epochs = (cfg.stage1, cfg.stage2, cfg.stage3)[stage - 1].epochs

        def on_epoch_end(stats: EpochStats) -> None:
            record = {"stage": stage, **stats.__dict__}
            # rank 0's clock decides for all: every rank must take part in a validation pass
            if self.dist.broadcast_object(schedule.wants(self.state["history"], stage, stats.seconds,
                                                         last=stats.epoch + 1 >= epochs)):
                began = time.perf_counter()
                metrics = validate(model, stage)  # empty for a museum without queries
                if metrics:
                    record.update(metrics, val_seconds=round(time.perf_counter() - began, 3))
            self.state["history"].append(record)
            self.state["stages"][str(stage)] = self._stage_times(stage, prior_seconds + time.perf_counter() - started)
            if self.dist.is_main:
                print(f"stage {stage} epoch {stats.epoch}: loss {stats.loss:.4f} acc {stats.accuracy:.3f}"
                      + (f" | val mP@1 {100 * record['val_mp_at_1']:.2f} mAP {100 * record['val_map']:.2f}"
                         if "val_mp_at_1" in record else ""), file=sys.stderr)
            self._save(model, optimizer, index, stats.epoch + 1)

        common = dict(device=self.device, start_epoch=first_epoch, on_epoch_end=on_epoch_end,
                      progress=self.progress, dist=self.dist)
        if stage in (1, 2) and cfg.view_pool.views(stage):
            pool = self._view_pool(stage, trunk, contract)
            stage2 = {"short_sides": cfg.stage2.short_sides, "max_aspect": cfg.stage2.max_aspect} if stage == 2 else {}
            data = PooledViews(pool, self.train_images.labels, start_block=len(trunk), seed=cfg.seed, **stage2)
            fit = fit_classification if stage == 1 else fit_fcn
            fit(model.classifier, optimizer, data, cfg.stage1 if stage == 1 else cfg.stage2, **common)
        elif stage == 1:
            data = ClassificationDataset(self.train_images, contract, size=cfg.stage1.image_size,
                                         augment_config=cfg.augment, seed=cfg.seed)
            fit_classification(model.classifier, optimizer, data, cfg.stage1, **common)
        elif stage == 2:
            data = FCNDataset(self.train_images, contract, short_sides=cfg.stage2.short_sides,
                              max_aspect=cfg.stage2.max_aspect, augment_config=cfg.augment, seed=cfg.seed)
            fit_fcn(model.classifier, optimizer, data, cfg.stage2, **common)
        else:
            fit_descriptor(model.net, top, train3, labels3, optimizer, cfg.stage3, **common)
        self.state["stages"][str(stage)] = {
            **self._stage_times(stage, prior_seconds + time.perf_counter() - started), **peaks(self.device, window)}
        self._save(model, None, index + 1, 0)
        if index + 1 < len(cfg.stages) and cfg.stages[index + 1] == 3:
            self._save(model, None, index + 1, 0, path=self.out / STAGE3_START)


def start_at_stage3(source: Path | str, out: Path | str, config: TrainConfig, *, data: Path | str,
                    pretrained: bool = True) -> None:
    """Make ``out`` a run of ``config`` that resumes at stage 3 from run ``source``'s stages 1-2.

    Stage-3 variants (another loss, another descriptor size) share stages 1 and 2; training
    those once saves most of a variant's cost. ``source`` must hold :data:`STAGE3_START` from
    the same museum, the same initial weights and every setting but ``stage3`` and
    ``validation`` the same, or a ValueError says what differs. The shared stages keep their
    history and are marked ``shared_from`` in the run's ``history.json``. Then
    ``TrainingRun(..., resume=True)``.
    """
    source, out = Path(source), Path(out)
    saved = load_checkpoint(source / STAGE3_START)
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{source / STAGE3_START}: not a {CHECKPOINT_FORMAT} checkpoint")
    theirs, ours = json.loads(saved["config"]), config.to_dict()
    # how often epochs are validated changes no weight: a variant may validate differently
    differs = [key for key in sorted(set(theirs) | set(ours))
               if key not in ("stage3", "validation") and theirs.get(key) != ours.get(key)]
    if saved.get("data") != str(Path(data).resolve()):
        differs.append(f"museum ({saved.get('data')})")
    if saved.get("pretrained") != pretrained:
        differs.append(f"initial weights (pretrained={saved.get('pretrained')})")
    if differs:
        raise ValueError(f"{source} cannot give its stages 1-2 to this run: {', '.join(differs)} differ")
    if (out / "checkpoint.pt").exists():
        raise FileExistsError(f"{out} already holds a run")
    stages = json.loads(saved["stages"])
    for record in stages.values():
        record["shared_from"] = str(source)
    save_checkpoint(out / "checkpoint.pt", {**saved, "config": json.dumps(ours), "stages": json.dumps(stages)})


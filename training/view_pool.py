"""A pool of augmented views per photo, run through the frozen trunk once and memory-mapped.

Stages 1 and 2 show every photo augmented afresh in every epoch, so the frozen blocks below
the ``train_blocks`` that learn (3.1.2) run again on every draw: on EfficientNet-Lite0 at 224
that is 60 % of a training step's time, plus the augmentation itself. A pool of ``views``
draws per photo, each put through the trunk once, turns an epoch into a run of the learnt
blocks only. The price is variety: a photo shows at most ``views`` distinct augmentations in
the whole stage (every ``views`` epochs cycle through all of them, in an order drawn per photo
and cycle), instead of one per epoch. :attr:`TrunkViewPool.distinct_views` says how many a
photo gets; ``views = 0`` keeps the fresh draw of every epoch.

The features are float16 in one flat file beside the run (``features.f16``) with an index of
every entry's offset and shape, so a museum's pool costs disk, not memory. The manifest is
written last and names a fingerprint of everything the features depend on (the frozen
weights, the photos, the augmentation, the sizes, the seed): a resumed run reopens a complete
pool whose fingerprint matches, and rebuilds one that was killed mid-way or is stale.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from muselens.core import checks
from muselens.core.files import write_whole
from muselens.core.preprocess import PreprocessContract, prepare_short_side, prepare_square
from muselens.training.augment import AugmentConfig, augment, cap_aspect_with_noise, phone_view
from muselens.training.datasets import LabelledImages
from muselens.training.loader_workers import in_order

POOL_FORMAT = "muselens-trunk-view-pool/1"
POOL_STREAM = 7  # keeps the pool's generators apart from the per-epoch and PhotoViews draws
_BATCH = 16  # square views go through the trunk this many at a time


@dataclass(frozen=True)
class ViewPoolConfig:
    """How many pooled views stages 1 and 2 draw from (0: a fresh augmentation every epoch).

    ``phone_share`` of each photo's views are phone views (tilt, lighting, blur, JPEG of
    :func:`~muselens.training.augment.phone_view`) instead of the thesis augmentation alone.
    """

    stage1_views: int = 8
    stage2_views: int = 4
    phone_share: float = 0.0

    def __post_init__(self) -> None:
        checks.integer(self.stage1_views, "stage1_views", low=0)
        checks.integer(self.stage2_views, "stage2_views", low=0)
        checks.number(self.phone_share, "phone_share", low=0, high=1)

    def views(self, stage: int) -> int:
        return {1: self.stage1_views, 2: self.stage2_views}[stage]


@dataclass(frozen=True)
class PoolShape:
    """What one pooled view is made into: a ``square`` image, or the photo at each ``short_sides``."""

    square: int | None = None
    short_sides: tuple[int, ...] = ()
    max_aspect: float = 2.0

    def __post_init__(self) -> None:
        if (self.square is None) == (not self.short_sides):
            raise ValueError("a pool shape is either square=N or short_sides=(...), not both or neither")
        if self.square is not None:
            checks.positive_int(self.square, "square")
        for side in self.short_sides:
            checks.positive_int(side, "each short side")
        object.__setattr__(self, "short_sides", tuple(self.short_sides))
        checks.number(self.max_aspect, "max_aspect", low=1)

    @property
    def scales(self) -> int:
        return 1 if self.square is not None else len(self.short_sides)


def view_order(item: int, epoch: int, views: int, seed: int) -> int:
    """The pooled view item ``item`` shows in ``epoch``: every ``views`` epochs go through all
    views once, in an order drawn from ``(seed, item, cycle)``, so no view repeats before all
    have been shown and a resumed run picks the same view."""
    checks.positive_int(views, "views")
    cycle, within = divmod(checks.integer(epoch, "epoch", low=0), views)
    return int(np.random.default_rng([seed, POOL_STREAM, item, cycle]).permutation(views)[within])


def trunk_fingerprint(trunk: nn.Module) -> str:
    """A digest of the frozen blocks' weights and buffers: the pool is valid for these only."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(trunk.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


def images_fingerprint(images: LabelledImages) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for image, label in zip(images.images, images.labels):
        digest.update(np.asarray(image.shape, dtype=np.int64).tobytes())
        digest.update(int(label).to_bytes(8, "little"))
        digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


class TrunkViewPool:
    """Trunk features of ``views`` augmented draws of each photo, in ``shape``; see the module."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder = Path(folder)
        self.manifest = manifest
        self.views = int(manifest["views"])
        self.items = int(manifest["items"])
        self.scales = int(manifest["scales"])
        self.seed = int(manifest["seed"])
        self.index = np.load(self.folder / "index.npy", allow_pickle=False)
        expected = self.items * self.views * self.scales
        if self.index.shape != (expected, 4):
            raise ValueError(f"{self.folder}: index holds {self.index.shape[0]} entries, the manifest says {expected}")
        self.data = np.memmap(self.folder / "features.f16", dtype=np.float16, mode="r")

    # -- building --------------------------------------------------------------------------
    @classmethod
    def open_or_build(
        cls,
        folder: Path | str,
        trunk: nn.Module,
        images: LabelledImages,
        contract: PreprocessContract,
        *,
        shape: PoolShape,
        views: int,
        augment_config: AugmentConfig,
        seed: int,
        stage: int,
        phone_share: float = 0.0,
        device: torch.device | str = "cpu",
        progress: bool = True,
        workers: int = 0,
    ) -> TrunkViewPool:
        """The pool in ``folder`` if it is complete and made from the same inputs, else a new one
        (its views drawn by ``workers`` threads: the same views whatever their number)."""
        checks.positive_int(views, "views")
        folder = Path(folder)
        key = {
            "format": POOL_FORMAT, "stage": stage, "views": views, "items": len(images), "scales": shape.scales,
            "shape": {"square": shape.square, "short_sides": list(shape.short_sides), "max_aspect": shape.max_aspect},
            "seed": seed, "augment": json.loads(json.dumps(asdict(augment_config))), "phone_share": phone_share,
            "contract": contract.to_dict(), "trunk": trunk_fingerprint(trunk), "images": images_fingerprint(images),
        }
        manifest_path = folder / "manifest.json"
        if manifest_path.exists():
            try:
                saved = json.loads(manifest_path.read_text())
            except (OSError, ValueError):
                saved = None
            if saved == key:
                return cls(folder, saved)
        manifest_path.unlink(missing_ok=True)  # a pool without a manifest is never opened
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "features.f16").unlink(missing_ok=True)  # a stale pool's space counts as free
        need, free = estimate_bytes(trunk, images, shape, views, device), shutil.disk_usage(folder).free
        if need > free:
            raise ValueError(f"the stage-{stage} view pool needs about {need / 2**20:.0f} MiB in {folder} but only "
                             f"{free / 2**20:.0f} MiB are free: free some space, lower view_pool.stage{stage}_views "
                             "or set it to 0 (fresh augmentation, no pool)")
        entries = _write_features(folder / "features.f16", trunk, images, contract, shape, views, augment_config,
                                  seed, stage, phone_share, device, progress, workers)
        write_whole(folder / "index.npy", lambda f: np.save(f, entries))
        write_whole(manifest_path, lambda f: f.write(json.dumps(key, indent=1).encode()))
        return cls(folder, key)

    # -- reading ---------------------------------------------------------------------------
    @property
    def distinct_views(self) -> int:
        """Distinct augmentations a photo shows over the stage (the fresh path shows one per epoch)."""
        return self.views

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def features(self, item: int, view: int, scale: int = 0) -> torch.Tensor:
        """One entry's trunk features ``(C, h, w)``, float32."""
        offset, c, h, w = self.index[(item * self.views + view) * self.scales + scale]
        block = np.asarray(self.data[offset:offset + c * h * w], dtype=np.float32)
        return torch.from_numpy(block.reshape(int(c), int(h), int(w)))


def estimate_bytes(trunk: nn.Module, images: LabelledImages, shape: PoolShape, views: int, device) -> int:
    """About how much disk a pool takes: each photo's un-augmented size at every scale (the
    augmentation's zoom averages out), at the trunk's stride and width, float16."""
    was_training = trunk.training
    trunk.eval()
    try:
        with torch.no_grad():
            probe = trunk(torch.zeros(1, 3, 64, 64, device=device))
    finally:
        trunk.train(was_training)
    channels, stride = probe.shape[1], 64 / probe.shape[2]
    per_view = 0
    for image in images.images:
        h, w = image.shape[:2]
        if shape.square is not None:
            sizes = [(shape.square, shape.square)]
        else:
            long_side = min(max(h, w) / min(h, w), shape.max_aspect)
            sizes = [(side, side * long_side) for side in shape.short_sides]
        per_view += sum(math.ceil(a / stride) * math.ceil(b / stride) for a, b in sizes)
    return int(per_view * channels * views * 2)


def _draw(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig, phone: bool) -> np.ndarray:
    return phone_view(image, config, rng) if phone else augment(image, config, rng)


def _write_features(path: Path, trunk: nn.Module, images: LabelledImages, contract: PreprocessContract,
                    shape: PoolShape, views: int, augment_config: AugmentConfig, seed: int, stage: int,
                    phone_share: float, device, progress: bool, workers: int = 0) -> np.ndarray:
    """Append every entry's float16 features to ``path`` in (item, view, scale) order; returns the index."""
    phone_views = int(round(phone_share * views))
    entries: list[tuple[int, int, int, int]] = []
    offset = 0
    was_training = trunk.training
    trunk.eval()
    keys = [(i, v) for i in range(len(images)) for v in range(views)]
    bar = tqdm(total=len(keys), desc=f"trunk: stage-{stage} view pool", unit="view", disable=not progress,
               file=sys.stderr)
    try:
        with open(path, "wb") as out, torch.no_grad():
            def put(features: torch.Tensor) -> None:
                nonlocal offset
                block = features.to("cpu", torch.float16).contiguous().numpy()
                out.write(block.tobytes())
                entries.append((offset, *block.shape))
                offset += block.size

            def prepared(k: int) -> np.ndarray | list[np.ndarray]:
                """Key ``k``'s view, drawn and made into trunk input (on a worker thread when workers > 0)."""
                item, view = keys[k]
                rng = np.random.default_rng([seed, POOL_STREAM, stage, item, view])
                # the first views of a photo are its phone views
                drawn = _draw(images.images[item], rng, augment_config, view < phone_views)
                if shape.square is not None:
                    return prepare_square(drawn, contract, shape.square)
                rng = np.random.default_rng([seed, POOL_STREAM, stage, item, view, 1])
                drawn = cap_aspect_with_noise(drawn, shape.max_aspect, rng)
                return [prepare_short_side(drawn, contract, side, shape.max_aspect) for side in shape.short_sides]

            batch: list[np.ndarray] = []

            def flush() -> None:  # square views go through the trunk _BATCH at a time
                if batch:
                    for features in trunk(torch.from_numpy(np.concatenate(batch)).to(device)):
                        put(features)
                    bar.update(len(batch))
                    batch.clear()

            for x in in_order(prepared, len(keys), workers):
                if shape.square is None:  # one view's scales, one at a time (their sizes differ)
                    for scaled in x:
                        put(trunk(torch.from_numpy(scaled).to(device))[0])
                    bar.update(1)
                    continue
                batch.append(x)
                if len(batch) == _BATCH:
                    flush()
            flush()
            out.flush()
    finally:
        bar.close()
        trunk.train(was_training)
    return np.asarray(entries, dtype=np.int64).reshape(-1, 4)


class PooledViews(Dataset):
    """A stage's items from a :class:`TrunkViewPool`: ``(features, label)`` where features is
    ``(C, h, w)`` for a square pool (stage 1, items batch normally) or a tuple of one ``(C, h, w)``
    per short side (stage 2). ``start_block`` tells the model where the features enter it."""

    def __init__(self, pool: TrunkViewPool, labels: Sequence[int], *, start_block: int, seed: int,
                 short_sides: Sequence[int] = (), max_aspect: float = 2.0):
        if len(labels) != pool.items:
            raise ValueError(f"{len(labels)} labels for a pool of {pool.items} photos")
        self.pool = pool
        self.labels = [int(label) for label in labels]
        self.start_block = checks.integer(start_block, "start_block", low=1)
        self.seed = checks.integer(seed, "seed", low=0)
        self.short_sides = tuple(short_sides)
        self.max_aspect = float(max_aspect)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = checks.integer(epoch, "epoch", low=0)

    def __len__(self) -> int:
        return self.pool.items

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} photos")
        view = view_order(index, self.epoch, self.pool.views, self.seed)
        if self.pool.scales == 1 and not self.short_sides:
            return self.pool.features(index, view), self.labels[index]
        return tuple(self.pool.features(index, view, s) for s in range(self.pool.scales)), self.labels[index]

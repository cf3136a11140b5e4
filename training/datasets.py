"""Torch datasets over a museum's reference photos for the two fine-tuning stages.

Every artwork is a class; its index is its position in the sorted ``instance_ids``
(:class:`InstanceLabels`, saved with the model). Photos are decoded once into memory by
:func:`load_labelled_images` (a museum is small; large photos are shrunk to ``max_short_side``
on the way in), and a photo that cannot be read is logged, collected and skipped, never fatal.

* :class:`ClassificationDataset` (stage 1, paper 004 3.1): an augmented photo resized to
  ``size x size``, so items batch normally.
* :class:`FCNDataset` (stage 2, 3.4.1): one augmented photo at its true aspect ratio (capped
  at ``max_aspect`` by noise padding), prepared at every short side in ``short_sides``; one
  image per item, items are not batched.
* :class:`PhotoViews` (stage 3): a fixed set of augmented phone views of some photos, the same
  in every epoch, so an artwork photographed once still has positive pairs.

Randomness: item ``i`` of epoch ``e`` is augmented with ``np.random.default_rng([seed, e, i])``
and :func:`epoch_order` shuffles with ``[seed, e]``, so an epoch is reproduced from the seed and
the epoch number alone, whatever the number of loader workers, and resuming needs no RNG state.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from muselens.core import checks
from muselens.core.data.images import SkippedImages, read_images
from muselens.core.data.museum_dataset import DatasetError, ImageRecord, MuseumDataset
from muselens.core.preprocess import PreprocessContract, prepare_short_side, prepare_square, resize_short_side
from muselens.training.augment import AugmentConfig, augment, cap_aspect_with_noise, phone_view

log = logging.getLogger(__name__)

DEFAULT_CACHE_SHORT_SIDE = 640
STAGE1_SIZE = 224  # the backbones' native square input
STAGE2_SHORT_SIDES = (448, 224)  # paper 004, 3.4.1
STAGE2_MAX_ASPECT = 2.0  # paper 004, 3.4.1
PURPOSES = ("training", "validation")  # what load_labelled_images' photos are for
VIEW_STREAM = 4  # keeps PhotoViews' generators apart from the per-epoch [seed, epoch, item] draws


@dataclass(frozen=True)
class InstanceLabels:
    """The class index of every artwork: its position in the sorted instance ids."""

    instance_ids: tuple[str, ...]
    _positions: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = tuple(self.instance_ids)
        if not ids:
            raise ValueError("there must be at least one instance")
        if list(ids) != sorted(set(ids)):
            raise ValueError("instance_ids must be sorted and unique")
        object.__setattr__(self, "instance_ids", ids)
        object.__setattr__(self, "_positions", {iid: i for i, iid in enumerate(ids)})

    @classmethod
    def from_museum(cls, museum: MuseumDataset) -> InstanceLabels:
        return cls(tuple(museum.instance_ids))

    def index(self, instance_id: str | None) -> int:
        try:
            return self._positions[instance_id]
        except KeyError:
            raise ValueError(f"instance {instance_id!r} is not one of the {len(self)} known instances") from None

    def __len__(self) -> int:
        return len(self.instance_ids)


@dataclass
class LabelledImages:
    """Decoded RGB uint8 photos with their class index; ``skipped`` lists the unreadable ones."""

    images: list[np.ndarray]
    labels: list[int]
    records: list[ImageRecord]
    instance_labels: InstanceLabels
    skipped: SkippedImages = field(default_factory=SkippedImages)

    def __len__(self) -> int:
        return len(self.images)

    def instances_without_images(self) -> list[str]:
        """Artworks none of whose photos could be read (their class can never be trained)."""
        present = set(self.labels)
        return [iid for i, iid in enumerate(self.instance_labels.instance_ids) if i not in present]


def load_labelled_images(
    records: Sequence[ImageRecord],
    instance_labels: InstanceLabels,
    *,
    max_short_side: int | None = DEFAULT_CACHE_SHORT_SIDE,
    purpose: str = "training",
) -> LabelledImages:
    """Decode ``records`` into memory, shrinking any photo whose short side exceeds ``max_short_side``.

    Unreadable files are logged as warnings and collected in ``.skipped``; the call fails only
    when nothing at all could be read. A record of an unknown instance (a distractor) is an error.
    Artworks left without a readable photo are reported for what they cost: for ``"training"``
    photos (references) a warning that they cannot be learnt; for ``"validation"`` photos
    (queries, which many artworks lack) a note that they are not validated.
    """
    if not isinstance(instance_labels, InstanceLabels):
        raise TypeError(f"instance_labels must be InstanceLabels, got {type(instance_labels).__name__}")
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
    checks.optional_int(max_short_side, "max_short_side", low=1)
    records = list(records)
    labels = [instance_labels.index(r.instance_id) for r in records]  # validate before decoding
    skipped = SkippedImages()
    out = LabelledImages([], [], [], instance_labels, skipped)
    label_of = dict(zip((id(r) for r in records), labels))
    for record, image in read_images(records, lambda r: r.path, skipped):
        if max_short_side is not None and min(image.shape[:2]) > max_short_side:
            image = resize_short_side(image, max_short_side, interpolation="area")
        out.images.append(image)
        out.labels.append(label_of[id(record)])
        out.records.append(record)
    if not out.images:
        raise DatasetError(f"none of the {len(records)} images could be read ({len(skipped)} skipped)")
    empty = out.instances_without_images()
    if empty and purpose == "training":
        log.warning("%d instance(s) have no readable photo and cannot be learnt: %s", len(empty), empty)
    elif empty:
        log.info("%d artwork(s) have no readable query photo: they are not validated", len(empty))
    return out


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled item order of one epoch, a function of ``(seed, epoch)`` only."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    seed, epoch = checks.integer(seed, "seed", low=0), checks.integer(epoch, "epoch", low=0)
    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


class _AugmentedImages(Dataset):
    """Shared part: the images, their labels, the augmentation and the per-item generator."""

    def __init__(self, images: LabelledImages, contract: PreprocessContract, augment_config: AugmentConfig | None,
                 seed: int):
        if not isinstance(images, LabelledImages):
            raise TypeError(f"images must be LabelledImages (see load_labelled_images), got {type(images).__name__}")
        if not isinstance(contract, PreprocessContract):
            raise TypeError(f"contract must be a PreprocessContract, got {type(contract).__name__}")
        if augment_config is not None and not isinstance(augment_config, AugmentConfig):
            raise TypeError(f"augment_config must be an AugmentConfig or None, got {type(augment_config).__name__}")
        self.images = images
        self.contract = contract
        self.augment_config = augment_config
        self.seed = checks.integer(seed, "seed", low=0)
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        return len(self.images.instance_labels)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (call before iterating each epoch)."""
        self.epoch = checks.integer(epoch, "epoch", low=0)

    def __len__(self) -> int:
        return len(self.images)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def _augmented(self, index: int, rng: np.random.Generator) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image = self.images.images[index]
        if self.augment_config is None:
            return image
        return augment(image, self.augment_config, rng)


class ClassificationDataset(_AugmentedImages):
    """Stage 1 items: ``(float32 tensor (3, size, size), class index)``.

    The augmented photo is resized to ``size x size`` ignoring its aspect ratio (the classic
    classification input; the independent x/y scaling augments aspect anyway) and normalised by
    the backbone's contract. ``augment_config=None`` gives the plain photo (evaluation).
    """

    def __init__(self, images: LabelledImages, contract: PreprocessContract, *, size: int = STAGE1_SIZE,
                 augment_config: AugmentConfig | None = AugmentConfig(), seed: int = 0):
        super().__init__(images, contract, augment_config, seed)
        checks.positive_int(size, "size")
        self.size = size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self._augmented(index, self._rng(index))
        x = prepare_square(image, self.contract, self.size)[0]
        return torch.from_numpy(x), self.images.labels[index]


class FCNDataset(_AugmentedImages):
    """Stage 2 items: ``(tuple of float32 tensors (3, H_s, W_s), one per short side; class index)``.

    One augmented draw per item, shown at every short side in ``short_sides`` at its true aspect
    ratio. An augmented image longer than ``max_aspect`` times its short side is first padded
    with uniform noise on its short side (:func:`~muselens.training.augment.cap_aspect_with_noise`),
    so the feature maps stay within ``max_aspect`` and memory stays bounded.
    """

    def __init__(self, images: LabelledImages, contract: PreprocessContract, *,
                 short_sides: Sequence[int] = STAGE2_SHORT_SIDES, max_aspect: float = STAGE2_MAX_ASPECT,
                 augment_config: AugmentConfig | None = AugmentConfig(), seed: int = 0):
        super().__init__(images, contract, augment_config, seed)
        sides = tuple(short_sides)
        if not sides or not all(checks.is_integer(s) and s >= 1 for s in sides):
            raise ValueError(f"short_sides must be one or more positive ints, got {short_sides!r}")
        checks.number(max_aspect, "max_aspect", low=1)
        self.short_sides = sides
        self.max_aspect = float(max_aspect)

    def __getitem__(self, index: int) -> tuple[tuple[torch.Tensor, ...], int]:
        rng = self._rng(index)
        image = cap_aspect_with_noise(self._augmented(index, rng), self.max_aspect, rng)
        # max_aspect here only guards rounding; the padding already brought the ratio within it.
        scales = tuple(
            torch.from_numpy(prepare_short_side(image, self.contract, s, self.max_aspect)[0])
            for s in self.short_sides
        )
        return scales, self.images.labels[index]


class PhotoViews(Sequence):
    """``views_per_photo`` augmented phone views (:func:`~muselens.training.augment.phone_view`)
    of each photo ``images.images[i]`` for ``i`` in ``photos``, labelled with its artwork.

    View ``v`` of photo ``i`` is drawn from ``np.random.default_rng([seed, VIEW_STREAM, i, v])``
    whenever it is read: nothing is held in memory, and a run resumed after a kill sees exactly
    the views the first process saw. The order is photo by photo, view by view.
    """

    def __init__(self, images: LabelledImages, photos: Sequence[int], views_per_photo: int,
                 augment_config: AugmentConfig, seed: int):
        if not isinstance(images, LabelledImages):
            raise TypeError(f"images must be LabelledImages (see load_labelled_images), got {type(images).__name__}")
        if not isinstance(augment_config, AugmentConfig):
            raise TypeError(f"augment_config must be an AugmentConfig, got {type(augment_config).__name__}")
        checks.positive_int(views_per_photo, "views_per_photo")
        photos = [checks.integer(p, "photo index", low=0) for p in photos]
        if any(p >= len(images) for p in photos):
            raise ValueError(f"photo indices must lie in [0, {len(images)}), got {max(photos)}")
        self.images = images
        self.augment_config = augment_config
        self.seed = checks.integer(seed, "seed", low=0)
        self.keys = [(p, v) for p in photos for v in range(views_per_photo)]
        self.labels = [images.labels[p] for p, _ in self.keys]

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} views")
        photo, view = self.keys[index]
        rng = np.random.default_rng([self.seed, VIEW_STREAM, photo, view])
        return phone_view(self.images.images[photo], self.augment_config, rng)

"""Describing each image once for ``bench accuracy``: descriptors memoised per image content
(:class:`DescriptorStore`, so each variant's pass is answered from memory) and a backbone whose
feature maps are memoised (:class:`MemoBackbone`, so every pooling and scale of the ImageNet
baselines comes from one pass of the CNN)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from muselens.training.backbones.base import Backbone
from muselens.training.evaluation.methods import DescriptorMethod


def image_key(image: np.ndarray) -> tuple[tuple[int, ...], str]:
    """Content key of an image: the same pixels give the same key in every variant's pass."""
    a = np.ascontiguousarray(image)
    return a.shape, hashlib.blake2b(a.data, digest_size=16).hexdigest()


class DescriptorStore:
    """Descriptors of every distinct image, computed once for a set of extractors run together.

    ``evaluate_method`` describes the whole dataset again for each variant; the store answers
    the repeats from memory. Extractors of one store run on the same missing images together,
    then ``after()`` runs (a shared backbone forgets its feature maps there).
    """

    def __init__(self, extractors: Mapping[str, Callable[[list[np.ndarray]], np.ndarray]],
                 after: Callable[[], None] | None = None):
        if not extractors:
            raise ValueError("a DescriptorStore needs at least one extractor")
        self.extractors = dict(extractors)
        self.after = after
        self.vectors: dict[str, dict[tuple, np.ndarray]] = {name: {} for name in self.extractors}
        self.seconds = 0.0
        self.described = 0

    def extract(self, name: str, images: Sequence[np.ndarray]) -> np.ndarray:
        if name not in self.extractors:
            raise ValueError(f"no extractor {name!r}; have {sorted(self.extractors)}")
        images = list(images)
        if not images:
            return self.extractors[name]([])
        keys = [image_key(im) for im in images]
        todo: dict[tuple, np.ndarray] = {}
        for key, image in zip(keys, images):
            if key not in self.vectors[name]:
                todo.setdefault(key, image)
        if todo:
            started = time.perf_counter()
            try:
                for other, extractor in self.extractors.items():
                    out = np.asarray(extractor(list(todo.values())), dtype=np.float32)
                    if out.shape[0] != len(todo):
                        raise ValueError(f"extractor {other!r} gave {out.shape[0]} descriptors for {len(todo)} images")
                    self.vectors[other].update(zip(todo, out))
            finally:
                if self.after is not None:
                    self.after()
            self.seconds += time.perf_counter() - started
            self.described += len(todo)
        return np.stack([self.vectors[name][k] for k in keys])

    def method(self, name: str, info: dict[str, Any] | None = None) -> DescriptorMethod:
        return DescriptorMethod(name, lambda images: self.extract(name, images), info=dict(info or {}))


class MemoBackbone(Backbone):
    """The same network, remembering its feature maps by input content until :meth:`forget`.

    MAC, SPoC, GeM and R-MAC pool the same last conv layer, and multi-scale descriptors include
    the full-size scale, so all of them read one forward pass per image batch and scale."""

    def __init__(self, backbone: Backbone):
        blocks = backbone.blocks()
        super().__init__(backbone.name, blocks[0], blocks[1:-1], blocks[-1], backbone.classifier,
                         backbone.contract)
        self._memo: dict[tuple, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        data = np.ascontiguousarray(x.detach().cpu().numpy())
        key = (tuple(x.shape), str(x.dtype), str(x.device), hashlib.blake2b(data.data, digest_size=16).hexdigest())
        if key in self._memo:
            self.hits += 1
            return self._memo[key]
        self.misses += 1
        fmap = super().features(x)
        self._memo[key] = fmap
        return fmap

    def forget(self) -> None:
        self._memo.clear()

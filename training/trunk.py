"""The frozen trunk, run once: cached lower-block features of every image.

Paper 004 retrains only the top blocks (3.1.2). Everything below them is frozen in every stage,
so for images seen without augmentation (stage 3's triplets, every validation pass) the
trunk's output is the same at every epoch. Computing it once turns each later pass into a run
of the few top blocks only: on CPU this is the difference between minutes and hours.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from muselens.core.preprocess import PreprocessContract, prepare_short_side
from muselens.training.loader_workers import in_order


class TrunkCache:
    """Trunk features of ``images`` at short side ``short_side`` (true aspect, capped), the images
    prepared on ``workers`` threads ahead of the trunk (0: in the calling thread)."""

    def __init__(
        self,
        trunk: nn.Module,
        images: Sequence[np.ndarray],
        contract: PreprocessContract,
        *,
        short_side: int,
        max_aspect: float | None = 2.0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float16,
        progress: bool = True,
        desc: str = "trunk features",
        workers: int = 0,
    ):
        self.short_side = short_side
        self.max_aspect = max_aspect
        self.dtype = dtype
        self.features: list[torch.Tensor] = []
        was_training = trunk.training
        trunk.eval()
        try:
            # no_grad, not inference_mode: the cached tensors feed training graphs later.
            with torch.no_grad():
                def prepared(index: int) -> np.ndarray:  # on a worker thread when workers > 0
                    return prepare_short_side(images[index], contract, short_side, max_aspect)

                for x in tqdm(in_order(prepared, len(images), workers), total=len(images), desc=desc, unit="img",
                              disable=not progress, file=sys.stderr):
                    x = torch.from_numpy(x)
                    # Stored compactly on the CPU; moved to the device one image at a time.
                    self.features.append(trunk(x.to(device)).to("cpu", dtype))
        finally:
            trunk.train(was_training)

    @classmethod
    def joined(cls, caches: Sequence[TrunkCache]) -> TrunkCache:
        """One cache of the images of ``caches``, in order; shares their tensors, runs nothing."""
        caches = list(caches)
        if not caches:
            raise ValueError("joined needs at least one TrunkCache")
        first = caches[0]
        for other in caches[1:]:
            if (other.short_side, other.max_aspect, other.dtype) != (first.short_side, first.max_aspect, first.dtype):
                raise ValueError("joined caches must share short_side, max_aspect and dtype; got "
                                 f"{(first.short_side, first.max_aspect, first.dtype)} and "
                                 f"{(other.short_side, other.max_aspect, other.dtype)}")
        out = cls.__new__(cls)
        out.short_side, out.max_aspect, out.dtype = first.short_side, first.max_aspect, first.dtype
        out.features = [f for cache in caches for f in cache.features]
        return out

    def __len__(self) -> int:
        return len(self.features)

    def get(self, index: int, device: torch.device | str) -> torch.Tensor:
        """The cached features of one image, ``(1, C, h, w)`` float32 on ``device``."""
        return self.features[index].to(device, torch.float32)

    def batches(self, rows: Sequence[int], batch: int) -> list[list[int]]:
        """Positions in ``rows`` grouped by their features' shape, at most ``batch`` a group.

        The learnt blocks run once per group instead of once per image: the same numbers while
        BatchNorm is frozen (stage 3, validation), and several times fewer calls into small
        convolutions on a CPU. Groups keep the order of ``rows`` within a shape.
        """
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for position, index in enumerate(rows):
            by_shape.setdefault(tuple(self.features[int(index)].shape), []).append(position)
        return [positions[i:i + batch] for positions in by_shape.values() for i in range(0, len(positions), batch)]

    def stack(self, indices: Sequence[int], device: torch.device | str) -> torch.Tensor:
        """The cached features of images of one shape, ``(len(indices), C, h, w)`` float32."""
        return torch.cat([self.features[int(i)] for i in indices]).to(device, torch.float32)

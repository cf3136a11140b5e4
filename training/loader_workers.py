"""Worker threads for the CPU side of training: augmentation, resizing, normalising.

On a GPU the trunk runs a CLICIDE-sized museum's 3,248 photos in a second or two, but drawing
their augmented views on one Python thread took 70 s (the first GPU check, an H200 with 16 cores):
the GPU waited on the CPU. ``TrainConfig.loader_workers`` spreads that work over threads. Threads,
not processes: OpenCV and NumPy release the GIL in the heavy steps (warps, resizes, colour and
JPEG work), the museum's decoded photos are shared rather than copied, and nothing is forked from
a process whose OpenMP and OpenCV thread pools are already running (a forked worker hung on
exactly that in a test here). On the 2-core CPU box the trunk itself needs both cores, so the
default there stays 0 (the calling thread draws, as before). Draws are seeded by (seed, item,
view), never by the thread that makes them, so any number of workers gives the same views in
the same order.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")

AUTO = -1  # TrainConfig.loader_workers: pick by device (see resolve_workers)
MAX_AUTO_WORKERS = 8
AHEAD_PER_WORKER = 4  # results computed ahead of the caller, per worker: bounds the memory held


def resolve_workers(requested: int, device: torch.device | str) -> int:
    """``requested``, or for :data:`AUTO` 0 on the CPU and ``min(8, cores - 1)`` on a GPU."""
    if requested != AUTO:
        return requested
    if torch.device(device).type == "cpu":
        return 0
    return max(0, min(MAX_AUTO_WORKERS, (os.cpu_count() or 1) - 1))


def in_order(fn: Callable[[int], T], count: int, workers: int) -> Iterator[T]:
    """``fn(0), fn(1), ..., fn(count - 1)``, computed by ``workers`` threads ahead of the caller
    (in the calling thread when 0), yielded in index order. An exception in ``fn`` is raised here,
    at its index."""
    if workers <= 0:
        for index in range(count):
            yield fn(index)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="muselens-draw") as pool:
        pending: deque[Future[T]] = deque()
        submitted = 0
        try:
            while submitted < count or pending:
                while submitted < count and len(pending) < workers * AHEAD_PER_WORKER:
                    pending.append(pool.submit(fn, submitted))
                    submitted += 1
                yield pending.popleft().result()
        finally:
            for future in pending:  # the caller stopped early: drop what was queued
                future.cancel()

"""What one training epoch measured, the same record for every stage (loss, accuracy, images,
seconds, learning rate), as the run's history keeps it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EpochStats:
    """What one pass over the data measured; ``accuracy`` is top-1 (per location in stage 2)."""

    epoch: int
    loss: float
    accuracy: float
    images: int
    seconds: float
    lr: float

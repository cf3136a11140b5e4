"""Checkpoints that survive a kill at any instant and load without unpickling code.

A checkpoint holds only tensors and plain containers (dicts, lists, str, int, float, bool,
None), so ``torch.load(..., weights_only=True)`` reads it. It is written to a temporary file in
the same directory, flushed to disk, then renamed over the old one: a SIGKILL mid-write leaves
the previous checkpoint intact, never a torn file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from muselens.core.files import write_whole


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    write_whole(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable muselens checkpoint ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of state, found {type(state).__name__}")
    return state

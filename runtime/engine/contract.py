"""Reading the descriptor contract an exported model carries in its ONNX metadata.

Export writes the contract (short side, aspect cap, resampling, k, D, output names) into the
ONNX file's custom metadata under :data:`METADATA_KEY` and into the bundle manifest; the
runtime reads it back here and hard-codes nothing. The names and layout the graph speaks are
defined once, in this module, because export (which writes them) depends on the runtime.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METADATA_KEY = "muselens.descriptor"
VARIANT_KEY = "muselens.variant"
INPUT_NAME = "image"
INPUT_LAYOUT = "NHWC uint8 RGB"
# The graph's outputs, in order (see muselens.export.graph for what each one is).
OUTPUT_NAMES = ("descriptor", "activation", "descriptor_map", "locations", "class_logits")
REQUIRED_KEYS = ("short_side", "max_aspect", "preprocess", "k", "dim")


def contract_from_metadata(metadata: dict[str, str], source: str | Path = "model") -> dict[str, Any]:
    """The contract stored in an ONNX file's custom metadata (e.g. ORT's ``custom_metadata_map``)."""
    if METADATA_KEY not in metadata:
        raise ValueError(f"{source} carries no muselens descriptor contract (metadata key "
                         f"{METADATA_KEY!r} is missing): export it with muselens.export")
    try:
        contract = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: metadata {METADATA_KEY!r} is not valid JSON: {exc}") from exc
    if not isinstance(contract, dict):
        raise ValueError(f"{source}: metadata {METADATA_KEY!r} must hold a JSON object")
    for key in REQUIRED_KEYS:
        if key not in contract:
            raise ValueError(f"{source}: descriptor contract lacks {key!r}")
    return contract


def feature_cells(height: int, width: int, stride: int) -> int:
    """Cells of the last feature map for an input ``height x width`` (``ceil`` per side)."""
    return math.ceil(height / stride) * math.ceil(width / stride)


def feature_shape(height: int, width: int, stride: int) -> tuple[int, int]:
    """``(h, w)`` of the last feature map for an input ``height x width``."""
    return math.ceil(height / stride), math.ceil(width / stride)

"""The descriptor contract of an exported model, written once and carried everywhere.

The same dict goes into the ONNX file's metadata (key :data:`METADATA_KEY`) and into the
bundle manifest's ``descriptor`` field, so the runtime and every tool that only has the ONNX
file know how to prepare pixels (short side, aspect cap, resampling) and what comes out,
without hard-coding anything. Reading it back needs only ONNX Runtime (no torch, no onnx);
this module imports no torch either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from muselens.runtime.preprocess import PreprocessContract

METADATA_KEY = "muselens.descriptor"
VARIANT_KEY = "muselens.variant"
INPUT_NAME = "image"
INPUT_LAYOUT = "NHWC uint8 RGB"
# The graph's outputs, in order (see muselens.export.graph for what each one is).
OUTPUT_NAMES = ("descriptor", "activation", "descriptor_map", "locations", "class_logits")


def descriptor_contract(trained) -> dict[str, Any]:
    """The bundle's ``descriptor`` dict for a :class:`~muselens.training.trained.TrainedModel`.

    Keys the manifest checks: ``dim``, ``input``, ``outputs``, ``short_side``, ``k``,
    ``normalisation``, ``similarity``, ``max_aspect``, ``interpolation``; the rest
    (``input_name``, ``antialias``, ``stride``, ``preprocess``) let a client rebuild the
    resize exactly and know the smallest usable input (``k`` feature cells).
    """
    contract: PreprocessContract = trained.contract
    return {
        "dim": int(trained.model.net.dim),
        "k": int(trained.model.net.k),
        "input": INPUT_LAYOUT,
        "input_name": INPUT_NAME,
        "outputs": list(OUTPUT_NAMES),
        "short_side": int(trained.short_side),
        "max_aspect": float(trained.max_aspect),
        "interpolation": contract.interpolation,
        "antialias": contract.antialias,
        "stride": contract.stride,
        "normalisation": "l2",
        "similarity": "dot",
        "preprocess": contract.to_dict(),
    }


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
    for key in ("short_side", "max_aspect", "preprocess", "k", "dim"):
        if key not in contract:
            raise ValueError(f"{source}: descriptor contract lacks {key!r}")
    return contract

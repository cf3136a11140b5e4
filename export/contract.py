"""The descriptor contract of an exported model, written once and carried everywhere.

The same dict goes into the ONNX file's metadata (key :data:`METADATA_KEY`) and into the
bundle manifest's ``descriptor`` field, so the runtime and every tool that only has the ONNX
file know how to prepare pixels (short side, aspect cap, resampling) and what comes out,
without hard-coding anything. The names and the reader live in the lower layer,
:mod:`muselens.runtime.engine.contract`; this module builds the dict from a trained model.
"""

from __future__ import annotations

from typing import Any

from muselens.runtime.engine.contract import (INPUT_LAYOUT, INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, VARIANT_KEY,
                                            contract_from_metadata)
from muselens.core.preprocess import PreprocessContract

__all__ = ["INPUT_LAYOUT", "INPUT_NAME", "METADATA_KEY", "OUTPUT_NAMES", "VARIANT_KEY",
           "contract_from_metadata", "descriptor_contract"]


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

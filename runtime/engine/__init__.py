"""Running an exported model without torch: backends, the descriptor contract, the describer."""

from __future__ import annotations

from muselens.runtime.engine.backends import (BACKENDS, DEFAULT_BACKEND, BackendUnavailable, InferenceBackend,
                                              OrtBackend, available_backends, open_backend)
from muselens.runtime.engine.cancel import Cancellation, Cancelled
from muselens.runtime.engine.contract import (INPUT_LAYOUT, INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, VARIANT_KEY,
                                              contract_from_metadata, feature_cells, feature_shape)
from muselens.runtime.engine.describer import Describer, OrtDescriber
from muselens.runtime.engine.timing import latency_ms

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "INPUT_LAYOUT", "INPUT_NAME", "METADATA_KEY", "OUTPUT_NAMES", "VARIANT_KEY",
    "BackendUnavailable", "Cancellation", "Cancelled", "Describer", "InferenceBackend", "OrtBackend", "OrtDescriber", "available_backends",
    "contract_from_metadata", "feature_cells", "feature_shape", "latency_ms", "open_backend",
]

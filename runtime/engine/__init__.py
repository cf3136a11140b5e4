"""Running an exported model without torch: backends and the describer (its descriptor contract is
:class:`muselens.core.descriptor_contract.DescriptorContract`)."""

from __future__ import annotations

from muselens.runtime.engine.backends import (BACKENDS, DEFAULT_BACKEND, BackendUnavailable, InferenceBackend,
                                              OrtBackend, available_backends, open_backend)
from muselens.runtime.engine.cancel import Cancellation, Cancelled
from muselens.runtime.engine.describer import Describer, OrtDescriber
from muselens.runtime.engine.timing import latency_ms

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "BackendUnavailable", "Cancellation", "Cancelled", "Describer", "InferenceBackend",
    "OrtBackend", "OrtDescriber", "available_backends", "latency_ms", "open_backend",
]

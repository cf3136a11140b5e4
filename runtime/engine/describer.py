"""Describing images with an exported model: the contract's resize, then the graph.

:class:`Describer` resizes each RGB image with the contract's rule (short side, aspect cap,
resampling, antialiasing; :func:`muselens.core.preprocess.resize_short_side`) and feeds the
graph its uint8 pixels. Export builds the gallery, the variant metrics and the threshold
through it and the service recognises frames through it, so what export measures is what the
service computes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from muselens.core.data.images import SkippedImages, read_images
from muselens.core.data.museum_dataset import ImageRecord
from muselens.core import checks
from muselens.core.descriptor_contract import DescriptorContract
from muselens.core.preprocess import resize_short_side, short_side_size
from muselens.runtime.engine.backends import DEFAULT_BACKEND, InferenceBackend, open_backend
from muselens.runtime.engine.cancel import Cancellation
from muselens.runtime.engine.activity import RUNS
from muselens.runtime.engine.gate import InferenceGate, slots_for


class Describer:
    """One inference backend plus its descriptor contract. ``short_side`` overrides the contract's.

    The contract is ``contract`` (e.g. a loaded bundle manifest's ``descriptor``, validated when
    the manifest was read) or, when omitted, read from the model's own metadata. At most ``slots``
    runs are in flight at once (the backend's default when omitted; see
    :mod:`muselens.runtime.engine.gate`); more callers wait.
    """

    def __init__(self, backend: InferenceBackend, *, contract: DescriptorContract | None = None,
                 short_side: int | None = None, slots: int | None = None):
        self.backend = backend
        if getattr(backend, "one_thread_session", None) is not None and slots is None:
            # one run over every core when alone, one run per core beside other work (engine.activity)
            self.gate = InferenceGate(backend.parallelism, whole=True)
        else:
            self.gate = InferenceGate(slots_for(backend.name, slots))
        source = getattr(backend, "path", backend.name)
        if contract is None:
            contract = DescriptorContract.from_metadata(backend.metadata(), source)
        elif not isinstance(contract, DescriptorContract):
            raise checks.WrongTypeError(f"contract must be a DescriptorContract, got {type(contract).__name__}")
        self.contract = contract
        self.preprocess = contract.preprocess
        self.short_side = contract.short_side if short_side is None else checks.positive_int(short_side, "short_side")
        self.max_aspect = contract.max_aspect
        self.k = contract.k
        self.dim = contract.dim
        self.stride = contract.stride
        self.output_names = tuple(backend.output_names)
        if "descriptor" not in self.output_names:
            raise ValueError(f"{source}: no 'descriptor' output (outputs: {list(self.output_names)})")

    @classmethod
    def open(cls, model_path: Path | str, backend: str = DEFAULT_BACKEND, *, threads: int | None = None,
             device_id: int = 0, contract: DescriptorContract | None = None,
             short_side: int | None = None, slots: int | None = None, allow_telemetry: bool = False,
             adaptive: bool = False) -> Describer:
        """Start ``backend`` on ``model_path`` and wrap it. ``adaptive`` (ONNX Runtime on a CPU,
        ``slots`` not given): a run takes every core when nothing else is going on, one beside
        other work (:mod:`muselens.runtime.engine.activity`), as a server wants."""
        slots_for(backend, slots)  # a bad slot count is refused before the engine starts
        return cls(open_backend(model_path, backend, threads=threads, device_id=device_id,
                                allow_telemetry=allow_telemetry,
                                one_thread_session=adaptive and slots is None),
                   contract=contract, short_side=short_side, slots=slots)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` a ``height`` x ``width`` image is resized to (the contract's rule)."""
        return short_side_size(height, width, self.short_side, self.max_aspect)

    def resize(self, image: np.ndarray) -> np.ndarray:
        """An RGB uint8 image brought to the recognition size with the contract's rule."""
        return resize_short_side(image, self.short_side, self.max_aspect,
                                 interpolation=self.preprocess.interpolation,
                                 antialias=self.preprocess.antialias)

    def run(self, resized: np.ndarray, outputs: Sequence[str] | None = None,
            cancel: Cancellation | None = None, timings_ms: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        """Run the graph on one image already at the recognition size: ``{output name: array}``.

        The wait for an inference slot is added to ``timings_ms["queue"]`` when given."""
        if not isinstance(resized, np.ndarray) or resized.dtype != np.uint8 or resized.ndim != 3 \
                or resized.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got "
                             f"{getattr(resized, 'shape', None)} {getattr(resized, 'dtype', type(resized))}")
        h, w = resized.shape[:2]
        cells = self.contract.feature_cells(h, w)
        if cells < self.k:
            raise ValueError(f"a {h}x{w} input gives {cells} feature cells, fewer than k={self.k}")
        names = list(outputs) if outputs is not None else list(self.output_names)
        unknown = [n for n in names if n not in self.output_names]
        if unknown:
            raise ValueError(f"unknown output(s) {unknown}; the model has {list(self.output_names)}")
        batch = np.ascontiguousarray(resized[None])
        with self.gate.claim(cancel) as (waited_ms, held):
            if not self.gate.whole:
                values = self.backend.run(batch, names, cancel)
            else:  # alone: every core; beside other work: one
                RUNS.record(every_core=held == self.gate.slots)
                values = self.backend.run(batch, names, cancel, one_thread=held < self.gate.slots)
        if timings_ms is not None:
            timings_ms["queue"] = timings_ms.get("queue", 0.0) + waited_ms
        return dict(zip(names, values))

    def describe(self, image: np.ndarray) -> np.ndarray:
        """The ``(D,)`` float32 descriptor of one RGB image of any size."""
        return self.run(self.resize(image), ["descriptor"])["descriptor"][0].astype(np.float32)

    def describe_many(self, images: Iterable[np.ndarray]) -> np.ndarray:
        out = [self.describe(image) for image in images]
        return np.stack(out) if out else np.zeros((0, self.dim), np.float32)

    def describe_records(self, records: Sequence[ImageRecord],
                         skipped: SkippedImages | None = None) -> tuple[np.ndarray, list[str | None]]:
        """Descriptors and instance ids of the readable ``records`` (unreadable go to ``skipped``)."""
        skipped = SkippedImages() if skipped is None else skipped
        descriptors, ids = [], []
        for record, image in read_images(records, lambda r: r.path, skipped):
            descriptors.append(self.describe(image))
            ids.append(record.instance_id)
        if not descriptors:
            return np.zeros((0, self.dim), np.float32), ids
        return np.stack(descriptors), ids


def OrtDescriber(model_path: Path | str, *, short_side: int | None = None,  # noqa: N802 (a factory)
                 threads: int | None = None) -> Describer:
    """A :class:`Describer` on ONNX Runtime's CPU provider, the contract read from the file."""
    return Describer.open(model_path, "ort-cpu", threads=threads, short_side=short_side)

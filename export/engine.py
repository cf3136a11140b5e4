"""Running an exported model with ONNX Runtime on the CPU: torch-free, as the runtime will.

:class:`OrtDescriber` reads the descriptor contract from the ONNX file's own metadata, resizes
each RGB image with the contract's rule (short side, aspect cap, resampling, antialiasing;
:func:`muselens.runtime.preprocess.resize_short_side`) and feeds the graph its uint8 pixels.
Gallery building, variant metrics and threshold calibration all describe images through it,
so what export measures is what the served model computes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from muselens.export.contract import contract_from_metadata
from muselens.runtime.data.images import SkippedImages, read_images
from muselens.runtime.data.museum import ImageRecord
from muselens.runtime.preprocess import PreprocessContract, resize_short_side

PROVIDERS = ["CPUExecutionProvider"]


def open_session(model_path: Path | str, *, threads: int | None = None):
    """An ONNX Runtime CPU session (``threads`` intra-op threads; None lets ORT decide)."""
    import onnxruntime as ort

    path = Path(model_path)
    if not path.is_file():
        raise ValueError(f"ONNX model not found: {path}")
    options = ort.SessionOptions()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=PROVIDERS)


def feature_cells(height: int, width: int, stride: int) -> int:
    """Cells of the last feature map for an input ``height x width`` (``ceil`` per side)."""
    return math.ceil(height / stride) * math.ceil(width / stride)


class OrtDescriber:
    """One exported model, ready to describe images. ``short_side`` overrides the contract's."""

    def __init__(self, model_path: Path | str, *, short_side: int | None = None, threads: int | None = None):
        self.path = Path(model_path)
        self.session = open_session(self.path, threads=threads)
        self.contract = contract_from_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        self.preprocess = PreprocessContract.from_dict(self.contract["preprocess"])
        if short_side is None:
            short_side = int(self.contract["short_side"])
        if isinstance(short_side, bool) or not isinstance(short_side, int) or short_side < 1:
            raise ValueError(f"short_side must be a positive int, got {short_side!r}")
        self.short_side = short_side
        self.max_aspect = float(self.contract["max_aspect"])
        self.k = int(self.contract["k"])
        self.dim = int(self.contract["dim"])
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(uint8)":
            raise ValueError(f"{self.path}: expected one uint8 image input, got "
                             f"{[(i.name, i.type) for i in inputs]}")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        if "descriptor" not in self.output_names:
            raise ValueError(f"{self.path}: no 'descriptor' output (outputs: {self.output_names})")

    def resize(self, image: np.ndarray) -> np.ndarray:
        """An RGB uint8 image brought to the recognition size with the contract's rule."""
        return resize_short_side(image, self.short_side, self.max_aspect,
                                 interpolation=self.preprocess.interpolation,
                                 antialias=self.preprocess.antialias)

    def run(self, resized: np.ndarray, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the graph on one image already at the recognition size: ``{output name: array}``."""
        if not isinstance(resized, np.ndarray) or resized.dtype != np.uint8 or resized.ndim != 3 \
                or resized.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got "
                             f"{getattr(resized, 'shape', None)} {getattr(resized, 'dtype', type(resized))}")
        h, w = resized.shape[:2]
        cells = feature_cells(h, w, self.preprocess.stride)
        if cells < self.k:
            raise ValueError(f"a {h}x{w} input gives {cells} feature cells, fewer than k={self.k}")
        names = list(outputs) if outputs is not None else self.output_names
        values = self.session.run(names, {self.input_name: np.ascontiguousarray(resized[None])})
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


def latency_ms(model_path: Path | str, size: tuple[int, int], *, runs: int = 10, warmup: int = 2,
               threads: int | None = None, seed: int = 0) -> dict[str, float]:
    """Wall-clock ms per image of one ``session.run`` at ``size`` (H, W): p50/p95/mean after warm-up."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be a positive int, got {runs!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    session = open_session(model_path, threads=threads)
    name = session.get_inputs()[0].name
    image = np.random.default_rng(seed).integers(0, 256, (1, *size, 3), dtype=np.uint8)
    for _ in range(warmup):
        session.run(None, {name: image})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: image})
        times.append((time.perf_counter() - start) * 1000.0)
    t = np.asarray(times)
    return {"ms_p50": float(np.percentile(t, 50)), "ms_p95": float(np.percentile(t, 95)),
            "ms_mean": float(t.mean()), "runs": runs, "height": size[0], "width": size[1]}

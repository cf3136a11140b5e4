"""Reduced-precision variants of the exported model, and the drift they cost on the museum.

* fp16: ONNX Runtime's own converter (``onnxruntime.transformers.float16``; onnxconverter-common
  is not needed) with ``keep_io_types=True``, so the input stays uint8 and the outputs float32.
  The backbone runs in fp16; the region head (everything from the last feature map on, see
  :func:`~muselens.export.onnx_graph.head_nodes`) is kept float32, and the converter's
  float32->float16->float32 round trips between kept nodes are removed, so the top-k ranking and
  the final L2-normalisation are computed in float32 and descriptors are unit-norm to ~1e-7.
* int8: ``onnxruntime.quantization.quantize_static``, QDQ format, per-channel symmetric int8
  weights and uint8 activations (U8S8: ORT's fast path on x86 CPUs; on AVX2 machines without
  VNNI it can saturate, where a ``reduce_range`` re-export would be the fix), MinMax
  calibration on the museum's own reference images, resized exactly as served (uint8 NHWC).
  Quantized: the backbone's ``Conv``, ``Clip`` (ReLU6) and residual ``Add`` nodes. ``Clip``
  must be among them: only then does the quantizer fold each ReLU6 into its convolution and
  quantize the *clipped* [0, 6] range; with convolutions alone the pre-activation range (about
  +-100) sets the step and the features lose most of their precision (descriptor cosine to
  fp32 fell to 0.7-0.9 in our measurements, against 0.98-0.999 with Clip). Left in float: the
  uint8 input and its Cast/normalisation (already exact: 256 input levels), the shape
  arithmetic of the "same" padding (:func:`~muselens.export.onnx_graph.shape_nodes`;
  quantizing sizes would be wrong, not just imprecise) and the region head, as for fp16.

:func:`measure_variant` computes a variant's mP@1 and mAP with ONNX Runtime alone;
:func:`check_drift` refuses a variant that loses too much mP@1 against fp32.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from muselens.export.contract import VARIANT_KEY
from muselens.runtime.engine import OrtDescriber
from muselens.export.onnx_graph import (save_checked, elide_cast_round_trips, head_nodes, prune_unused, set_metadata,
                                        shape_nodes, topological_sort)
from muselens.runtime.data.images import SkippedImages, read_images
from muselens.runtime.data.museum import MuseumDataset
from muselens.runtime.metrics import evaluate_retrieval, instance_average, queries_in_gallery, similarity

log = logging.getLogger(__name__)

VARIANTS = ("fp32", "fp16", "int8")
DEFAULT_MAX_DROP_POINTS = 1.0
DEFAULT_CALIBRATION_IMAGES = 32
INT8_OP_TYPES = ("Conv", "Clip", "Add")  # Clip: see the module docstring


class DriftError(ValueError):
    """A reduced-precision variant lost more retrieval accuracy than allowed."""


def convert_fp16(src: Path | str, dst: Path | str) -> Path:
    """The fp16 variant of the fp32 model ``src``: backbone in fp16, I/O and region head float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    keep = head_nodes(model)
    converted = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep)
    elide_cast_round_trips(converted)
    topological_sort(converted)  # the converter appends its casts out of order
    set_metadata(converted, {VARIANT_KEY: "fp16"})
    return save_checked(converted, dst)


class ImageCalibrationReader:
    """Feeds quantization calibration one ``(1, H, W, 3)`` uint8 image at a time.

    Implements ONNX Runtime's ``CalibrationDataReader`` protocol (``get_next``, ``rewind``).
    """

    def __init__(self, images: Sequence[np.ndarray], input_name: str = "image"):
        if len(images) == 0:
            raise ValueError("calibration needs at least one image")
        for i, image in enumerate(images):
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
                    or image.shape[2] != 3:
                raise ValueError(f"calibration image {i} must be (H, W, 3) uint8 RGB, got "
                                 f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image))}")
        self.images = list(images)
        self.input_name = input_name
        self._next = 0

    def __len__(self) -> int:
        return len(self.images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.images):
            return None
        image = self.images[self._next]
        self._next += 1
        return {self.input_name: np.ascontiguousarray(image[None])}

    def rewind(self) -> None:
        self._next = 0


def calibration_images(dataset: MuseumDataset, describer: OrtDescriber,
                       limit: int = DEFAULT_CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Up to ``limit`` reference images, spread evenly over the sorted references, resized as served."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    refs = dataset.references
    picks = sorted({int(i) for i in np.linspace(0, len(refs) - 1, num=min(limit, len(refs)))})
    skipped = SkippedImages()
    images = [describer.resize(image) for _, image in read_images([refs[i] for i in picks],
                                                                   lambda r: r.path, skipped)]
    if not images:
        raise ValueError(f"none of the {len(picks)} calibration references could be read")
    return images


@contextlib.contextmanager
def _quiet_quantizer():
    """Silence the quantizer's expected chatter: a root-logger warning per shared Conv bias and
    ORT's per-initializer notices once Clip nodes are folded away. Restores the root logger's
    level and ORT's default severity (warning) afterwards."""
    import onnxruntime as ort

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        root.setLevel(level)
        ort.set_default_logger_severity(2)


def quantize_int8(src: Path | str, dst: Path | str, images: Sequence[np.ndarray]) -> Path:
    """The int8 (QDQ) variant of the fp32 model ``src``, calibrated on ``images`` (resized, uint8)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = ImageCalibrationReader(images)
    model = onnx.load(str(src))
    exclude = sorted(set(head_nodes(model)) | set(shape_nodes(model)))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="muselens-int8-", dir=dst.parent) as tmp:
        named = Path(tmp) / "named.onnx"  # head_nodes may have named unnamed nodes
        onnx.save(model, str(named))
        raw = Path(tmp) / "int8.onnx"
        with _quiet_quantizer():
            quantize_static(
                str(named), str(raw), reader,
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                op_types_to_quantize=list(INT8_OP_TYPES), nodes_to_exclude=exclude,
                calibrate_method=CalibrationMethod.MinMax,
            )
        quantized = onnx.load(str(raw))
    prune_unused(quantized)
    set_metadata(quantized, {VARIANT_KEY: "int8"})
    return save_checked(quantized, dst)


def retrieval_metrics(references: np.ndarray, reference_ids: Sequence[str], queries: np.ndarray,
                      query_ids: Sequence[str]) -> dict[str, float]:
    """mP@1 and mAP of queries against per-image references, and against instance averages."""
    ref_ids = np.asarray(reference_ids, dtype=str)
    q_ids = np.asarray(query_ids, dtype=str)
    keep = queries_in_gallery(q_ids, ref_ids) if len(q_ids) else np.zeros(0, bool)
    if not keep.any():
        raise ValueError("no query has a reference of its artwork: mP@1 cannot be measured")
    q, q_ids = queries[keep], q_ids[keep]
    report = evaluate_retrieval(similarity(q, references), q_ids, ref_ids)
    avg, avg_ids = instance_average(references, ref_ids)
    averaged = evaluate_retrieval(similarity(q, avg), q_ids, avg_ids)
    return {"mp_at_1": report.mp_at_1, "map": report.map, "mp_at_1_ia": averaged.mp_at_1,
            "map_ia": averaged.map, "n_queries": int(q.shape[0]), "n_references": int(references.shape[0])}


def measure_variant(model_path: Path | str, dataset: MuseumDataset | Path | str,
                    short_side: int | None = None) -> dict[str, float]:
    """A variant's retrieval metrics on the museum, with ONNX Runtime only (no torch).

    Queries are matched against the reference images (mP@1, mAP) and against the
    instance-averaged references (``*_ia``); images are resized by the model's own contract
    (``short_side`` overrides its short side). Unreadable images are skipped and counted.
    """
    museum = dataset if isinstance(dataset, MuseumDataset) else MuseumDataset.load(dataset)
    describer = OrtDescriber(model_path, short_side=short_side)
    skipped = SkippedImages()
    refs, ref_ids = describer.describe_records(museum.references, skipped)
    queries, query_ids = describer.describe_records(museum.queries, skipped)
    metrics = retrieval_metrics(refs, ref_ids, queries, query_ids)
    metrics["n_skipped"] = len(skipped)
    return metrics


def drop_points(fp32_metrics: Mapping[str, Any], variant_metrics: Mapping[str, Any], key: str = "mp_at_1") -> float:
    """How many percentage points ``key`` fell from fp32 to the variant (negative: it rose)."""
    for name, metrics in (("fp32_metrics", fp32_metrics), ("variant_metrics", variant_metrics)):
        if not isinstance(metrics, Mapping) or key not in metrics:
            raise ValueError(f"{name} must be a dict holding {key!r}")
        value = metrics[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}[{key!r}] must be a fraction in [0, 1], got {value!r}")
    return 100.0 * (float(fp32_metrics[key]) - float(variant_metrics[key]))


def check_drift(fp32_metrics: Mapping[str, Any], variant_metrics: Mapping[str, Any],
                max_drop_points: float = DEFAULT_MAX_DROP_POINTS, force: bool = False, *,
                variant: str = "variant") -> float:
    """The variant's mP@1 drop in points; raises :class:`DriftError` above ``max_drop_points``
    unless ``force`` (then it only logs a warning)."""
    if isinstance(max_drop_points, bool) or not isinstance(max_drop_points, (int, float)) \
            or not np.isfinite(max_drop_points) or max_drop_points < 0:
        raise ValueError(f"max_drop_points must be a finite number >= 0, got {max_drop_points!r}")
    drop = drop_points(fp32_metrics, variant_metrics)
    if drop > max_drop_points:
        message = (f"{variant}: mP@1 {100 * variant_metrics['mp_at_1']:.2f} is {drop:.2f} points below "
                   f"fp32's {100 * fp32_metrics['mp_at_1']:.2f}, more than the allowed {max_drop_points:g}")
        if not force:
            raise DriftError(message + " (raise --max-drop, drop the variant, or --force to keep it)")
        log.warning("%s; kept because forced", message)
    return drop

"""Reduced-precision variants of the exported model, and the drift they cost on the museum.

* fp16: ONNX Runtime's own converter (``onnxruntime.transformers.float16``; onnxconverter-common
  is not needed) with ``keep_io_types=True``, so the input stays uint8 and the outputs float32.
  The backbone runs in fp16; the region head (everything from the last feature map on, see
  :func:`~muselens.export.onnx_surgery.head_nodes`) is kept float32, and the converter's
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
  uint8 input and its Cast/normalisation (already exact: 256 input levels), any shape
  arithmetic (:func:`~muselens.export.onnx_surgery.shape_nodes`: the region head's, and a "same"
  padding the export could not fold into its convolution, see :mod:`~muselens.export.same_padding`;
  quantizing sizes would be wrong, not just imprecise) and the region head, as for fp16.

:func:`measure_variant` computes a variant's mP@1 and mAP with ONNX Runtime alone;
:func:`descriptor_agreement` compares a variant's descriptors with fp32's photo by photo (cosine,
top-1 agreement and top-k overlap of their gallery rankings), and :func:`check_drift` says why a
variant is too far from fp32 (:class:`DriftBounds`): it rests on those per-photo statistics, stable
on a museum with few queries; an mP@1 drop refuses only when the queries make it significant.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from muselens.core import checks
from muselens.core.descriptor_contract import VARIANT_KEY
from muselens.runtime.engine import OrtDescriber
from muselens.export.onnx_surgery import (save_checked, elide_cast_round_trips, head_nodes, prune_unused, set_metadata,
                                        shape_nodes, topological_sort)
from muselens.core.data.images import SkippedImages, read_images
from muselens.core.data.museum_dataset import MuseumDataset
from muselens.core.metrics import evaluate_retrieval, instance_average, queries_in_gallery, similarity

log = logging.getLogger(__name__)

VARIANTS = ("fp32", "fp16", "int8")
# Drift bounds (:class:`DriftBounds`). The cosine is per photo, over every photo of the museum;
# measured on real museums fp16 gives ~0.9999, int8 0.98-0.999, a broken int8 (no Clip) 0.7-0.9.
# A low percentile rather than the minimum: one odd photo among hundreds does not decide.
DEFAULT_MIN_COSINE = 0.95
COSINE_PERCENTILE = 5
# Top-1 agreement with fp32 over every photo (references ranked without themselves). Lenient:
# distractors have no true match and their near-tied top-1 flips under any perturbation.
DEFAULT_MIN_TOP1_AGREEMENT = 0.8
TOP_K_OVERLAP = 5  # reported, not bounded
TIE_TOLERANCE = 1e-6  # fp32 scores this close are a tie: either image agrees
# The mP@1 drop refuses only if also significant (one-sided sign test on the queries whose top-1
# changed): on a small query set one photo is many points, and that is noise, not drift.
DEFAULT_MAX_DROP_POINTS = 1.0
DRIFT_SIGNIFICANCE = 0.05
DEFAULT_CALIBRATION_IMAGES = 32
INT8_OP_TYPES = ("Conv", "Clip", "Add")  # Clip: see the module docstring


def parse_variants(text: str) -> tuple[str, ...]:
    """A comma-separated subset of :data:`VARIANTS` (``"fp32,int8"``), as ``--precision`` takes it."""
    items = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in items if p not in VARIANTS]
    if not items or unknown:
        raise ValueError(f"expected a comma-separated subset of {','.join(VARIANTS)}, got {text!r}")
    return items


class DriftError(ValueError):
    """A reduced-precision variant the bundle cannot do without (its default) drifted too far."""


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
    checks.positive_int(limit, "limit")
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
        checks.number(value, f"{name}[{key!r}]", low=0, high=1)
    return 100.0 * (float(fp32_metrics[key]) - float(variant_metrics[key]))


def query_hits(references: np.ndarray, reference_ids: Sequence[str], queries: np.ndarray,
               query_ids: Sequence[str]) -> np.ndarray:
    """Per query that has a reference of its artwork (as :func:`retrieval_metrics` keeps them):
    1.0 if its top-1 reference is of its artwork, else 0.0 (ties pessimistic); their mean is mP@1."""
    ref_ids = np.asarray(reference_ids, dtype=str)
    q_ids = np.asarray(query_ids, dtype=str)
    keep = queries_in_gallery(q_ids, ref_ids) if len(q_ids) else np.zeros(0, bool)
    if not keep.any():
        return np.zeros(0)
    return evaluate_retrieval(similarity(queries[keep], references), q_ids[keep], ref_ids).precision_at_1


def sign_test_p(lost: int, gained: int) -> float:
    """One-sided sign test: the chance of losing at least ``lost`` of the ``lost + gained`` queries
    whose top-1 changed if the variant were no worse than fp32 (each change a fair coin)."""
    for name, value in (("lost", lost), ("gained", gained)):
        checks.integer(value, name, low=0)
    n = int(lost) + int(gained)
    return sum(math.comb(n, j) for j in range(int(lost), n + 1)) / 2 ** n


def descriptor_agreement(fp32: np.ndarray, variant: np.ndarray, gallery: np.ndarray,
                         own_rows: np.ndarray | None = None, k: int = TOP_K_OVERLAP) -> dict[str, float]:
    """How closely a variant's descriptors of the same photos follow fp32's, photo by photo.

    Row i of ``fp32`` and ``variant`` is one photo. Per photo: the cosine of its two descriptors,
    and both rankings of ``gallery`` (fp32's references: what the runtime searches, whatever the
    variant): does the variant's top-1 score highest for fp32 too (ties in fp32's scores agree),
    and what fraction of fp32's top ``k`` is in the variant's. ``own_rows[i]`` is photo i's own
    gallery row (-1: none), left out of its rankings: a reference would otherwise find itself.
    Every photo counts, so the statistics rest on hundreds of photos where mP@1 has a few queries.
    """
    fp32 = np.asarray(fp32, dtype=np.float64)
    variant = np.asarray(variant, dtype=np.float64)
    gallery = np.asarray(gallery, dtype=np.float64)
    if fp32.ndim != 2 or fp32.shape != variant.shape or fp32.shape[0] == 0:
        raise ValueError(f"fp32 and variant must be the same non-empty (N, D) descriptors, got "
                         f"{fp32.shape} and {variant.shape}")
    if gallery.ndim != 2 or gallery.shape[1] != fp32.shape[1]:
        raise ValueError(f"gallery must be (G, {fp32.shape[1]}), got {gallery.shape}")
    checks.positive_int(k, "k")
    own = np.full(fp32.shape[0], -1) if own_rows is None else np.asarray(own_rows)
    if own.shape != (fp32.shape[0],) or not np.issubdtype(own.dtype, np.integer) \
            or (own < -1).any() or (own >= gallery.shape[0]).any():
        raise ValueError(f"own_rows must be {fp32.shape[0]} ints, each a gallery row < {gallery.shape[0]} or -1")
    norms = np.linalg.norm(fp32, axis=1) * np.linalg.norm(variant, axis=1)
    cosines = np.einsum("ij,ij->i", fp32, variant) / np.where(norms > 0, norms, 1.0)
    s32, sv = fp32 @ gallery.T, variant @ gallery.T
    ranked = np.flatnonzero(gallery.shape[0] - (own >= 0) > 0)
    if ranked.size == 0:
        raise ValueError("no photo has a gallery row besides its own to rank")
    s32, sv, own = s32[ranked], sv[ranked], own[ranked]
    rows = np.flatnonzero(own >= 0)
    s32[rows, own[rows]] = sv[rows, own[rows]] = -np.inf
    top1 = sv.argmax(axis=1)
    best = s32.max(axis=1)
    agree = s32[np.arange(len(ranked)), top1] >= best - TIE_TOLERANCE
    kk = np.minimum(k, gallery.shape[0] - (own >= 0))
    order32, orderv = np.argsort(-s32, axis=1, kind="stable"), np.argsort(-sv, axis=1, kind="stable")
    overlap = [len(set(order32[i, :kk[i]]) & set(orderv[i, :kk[i]])) / kk[i] for i in range(len(ranked))]
    return {"min_cosine_to_fp32": float(cosines.min()),
            "p05_cosine_to_fp32": float(np.percentile(cosines, COSINE_PERCENTILE)),
            "mean_cosine_to_fp32": float(cosines.mean()),
            "top1_agreement_with_fp32": float(agree.mean()),
            f"top{k}_overlap_with_fp32": float(np.mean(overlap)),
            "n_photos_compared": int(fp32.shape[0])}


@dataclass(frozen=True)
class DriftBounds:
    """When a reduced-precision variant is too far from fp32 to go in the bundle (see the defaults)."""

    min_cosine: float = DEFAULT_MIN_COSINE
    min_top1_agreement: float = DEFAULT_MIN_TOP1_AGREEMENT
    max_drop_points: float = DEFAULT_MAX_DROP_POINTS
    significance: float = DRIFT_SIGNIFICANCE

    def __post_init__(self) -> None:
        for name, low, high in (("min_cosine", -1.0, 1.0), ("min_top1_agreement", 0.0, 1.0),
                                ("max_drop_points", 0.0, 100.0), ("significance", 0.0, 1.0)):
            value = getattr(self, name)
            checks.number(value, name, low=low, high=high)


DRIFT_KEYS = ("p05_cosine_to_fp32", "top1_agreement_with_fp32", "mp_at_1_lost_queries",
              "mp_at_1_gained_queries")


def check_drift(fp32_metrics: Mapping[str, Any], variant_metrics: Mapping[str, Any],
                bounds: DriftBounds = DriftBounds()) -> str | None:
    """Why the variant is refused (every bound it fails, with its numbers), or None if it passes.

    The cosine and top-1 bounds decide on every photo of the museum. The mP@1 drop refuses only
    when it exceeds ``max_drop_points`` *and* the queries lost outnumber those gained beyond
    chance (:func:`sign_test_p` below ``significance``): on 20 queries one photo is 5 points.
    """
    if not isinstance(bounds, DriftBounds):
        raise TypeError(f"bounds must be DriftBounds, got {type(bounds).__name__}")
    missing = [key for key in DRIFT_KEYS if key not in variant_metrics]
    if missing:
        raise ValueError(f"variant_metrics lacks {missing}: measure the variant's drift first")
    drop = drop_points(fp32_metrics, variant_metrics)
    reasons = []
    cosine = float(variant_metrics["p05_cosine_to_fp32"])
    if cosine < bounds.min_cosine:
        reasons.append(f"{COSINE_PERCENTILE}th-percentile descriptor cosine to fp32 {cosine:.4f} is below "
                       f"{bounds.min_cosine:g}")
    agreement = float(variant_metrics["top1_agreement_with_fp32"])
    if agreement < bounds.min_top1_agreement:
        reasons.append(f"top-1 agrees with fp32 on {100 * agreement:.1f}% of the photos, below "
                       f"{100 * bounds.min_top1_agreement:g}%")
    lost, gained = int(variant_metrics["mp_at_1_lost_queries"]), int(variant_metrics["mp_at_1_gained_queries"])
    p = sign_test_p(lost, gained)
    if drop > bounds.max_drop_points and p < bounds.significance:
        reasons.append(f"mP@1 {100 * variant_metrics['mp_at_1']:.2f} is {drop:.2f} points below fp32's "
                       f"{100 * fp32_metrics['mp_at_1']:.2f}, more than the allowed {bounds.max_drop_points:g} "
                       f"({lost} queries lost, {gained} gained: p={p:.3g})")
    return "; ".join(reasons) or None

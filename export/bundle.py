"""From a finished training run to the museum's versioned bundle, every step checked.

:func:`export_bundle` exports the fp32 ONNX model and verifies it against PyTorch at several
sizes, describes the museum's references with that ONNX model through ONNX Runtime (the
gallery holds exactly what the runtime will compute), calibrates the "no artwork" threshold
(below), builds the requested reduced-precision variants, measures every
variant's mP@1/mAP on the museum's queries as the runtime will serve it (the variant describes
the query, the gallery holds fp32's references: a variant is never judged against a gallery of
its own, which scored int8 0.26 points below fp32 on grocery-packaged where served it is 0.90)
and its drift from fp32 on every photo
(:func:`~muselens.export.precision.check_drift`), leaves out, with a warning, a variant that
drifts too far (``--force`` keeps it; a refused default variant fails the export: the bundle
asked for cannot be made, and re-exporting the run is cheap), and writes the bundle with
:func:`muselens.runtime.bundle.write_bundle` (and, if asked, the ``.tar.gz`` archive beside it).
What was refused or forced, and why, is in :class:`ExportResult` and the manifest's
``training["drift"]``.

With ``tensorrt=True`` it also builds a TensorRT engine for each reduced precision asked for
(``fp16``, ``int8``) from the fp32 ONNX model (:mod:`muselens.export.tensorrt_build`), checks it
against fp32 ONNX Runtime at the parity sizes inside its profile, measures its mP@1/mAP on the
museum through the runtime's describer like any variant, and stores it as variant
``fp16-trt``/``int8-trt`` (``models/<variant>.plan``); its build (TensorRT version, GPU,
profile) and parity go to the manifest's ``training["tensorrt"]``. TensorRT missing is
found before any work starts, so nothing is half written.

Threshold: always calibrated at ``target_far`` (:mod:`muselens.core.metrics.threshold`), on
the top-1 dot-product scores against the instance-averaged gallery (what the runtime compares)
of every source of negatives: the museum's distractors when it has some, phone views of each
reference scored against the other artworks (an artwork the museum does not hold), and
generated photos of no artwork (walls, floors, visitors), all described with the fp32 ONNX
model. A museum without distractors used to get -1.0, "accept everything", which also broke
every stream (issue 18); the manifest's threshold now says which sources set it and how.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from muselens.core import checks
from muselens.export import tensorrt_build as trt_export
from muselens.runtime.engine import Describer, OrtDescriber, latency_ms
from muselens.export.onnx_export import export_onnx, parity_sizes, verify_onnx
from muselens.export.precision import (DEFAULT_CALIBRATION_IMAGES, DEFAULT_MAX_DROP_POINTS, DEFAULT_MIN_COSINE,
                                       DEFAULT_MIN_TOP1_AGREEMENT, VARIANTS, DriftBounds, DriftError,
                                       calibration_images, check_drift, convert_fp16, descriptor_agreement,
                                       drop_points, parse_variants, quantize_int8, query_hits, retrieval_metrics)
from muselens.runtime.bundle import (Gallery, LabelInfo, Threshold, dataset_digest, pack_bundle,
                                     write_bundle)
from muselens.runtime.bundle.manifest import ENGINE_SUFFIX, engine_variant, is_engine_variant
from muselens.runtime.verification import (FEATURE_KINDS, FeatureConfig, LocalFeatureStore, ShortlistVerifier,
                                           extract_features)
from muselens.core.data.images import SkippedImages, encode_jpeg, read_image
from muselens.core.data.museum_dataset import ImageRecord, MuseumDataset
from muselens.core.metrics.threshold import (DEFAULT_GENERATED, DEFAULT_TARGET_FAR, DEFAULT_VIEWS_PER_REFERENCE,
                                                calibrate_sources, negative_scores)

# A museum with at least this many local descriptors (about 230 references of ~870 ORB features)
# keeps its built vote index in the bundle: building it takes ~5 s on one core here and grows faster
# than the count (27.5 s at a million on 2 cores); smaller museums build it at load instead of
# carrying ~180 bytes a descriptor.
VOTE_INDEX_MIN_DESCRIPTORS = 200_000
VOTE_INDEX_CHOICES = ("auto", "always", "never")
PARITY_IMAGES = 3  # reference images resized to each parity size (natural content, fewer ties)


@dataclass(frozen=True)
class ExportOptions:
    """What to build and how strict to be (the command's flags)."""

    precisions: tuple[str, ...] = VARIANTS
    max_drop_points: float = DEFAULT_MAX_DROP_POINTS
    force: bool = False  # keep variants that fail the drift bounds
    min_cosine: float = DEFAULT_MIN_COSINE
    min_top1_agreement: float = DEFAULT_MIN_TOP1_AGREEMENT
    target_far: float = DEFAULT_TARGET_FAR
    non_artwork_photos: int = DEFAULT_GENERATED  # generated photos of no artwork the threshold is calibrated on
    impostor_views: int = DEFAULT_VIEWS_PER_REFERENCE  # phone views per reference, scored against the others
    archive: bool = False
    name: str | None = None
    bundle_version: str | None = None
    default_variant: str = "fp32"
    parity_sizes: tuple[tuple[int, int], ...] | None = None  # None: parity_sizes() of the run
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    latency_runs: int = 10
    reference_photos: bool = True  # the references at recognition size, for reference-side heatmaps
    tensorrt: bool = False  # also build TensorRT engines for the fp16/int8 variants
    tensorrt_workspace_gb: float = trt_export.DEFAULT_WORKSPACE_GB
    # every reference's local features, for the runtime's geometric verification (None: none)
    local_features: FeatureConfig | None = FeatureConfig()
    # keep the built vote index in the bundle: "auto" from VOTE_INDEX_MIN_DESCRIPTORS descriptors
    vote_index: str = "auto"

    def __post_init__(self) -> None:
        precisions = tuple(self.precisions)
        unknown = [p for p in precisions if p not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown precision(s) {unknown}; expected some of {list(VARIANTS)}")
        if len(set(precisions)) != len(precisions):
            raise ValueError(f"precisions repeat a variant: {list(precisions)}")
        if "fp32" not in precisions:
            raise ValueError("precisions must include fp32: the gallery, the threshold and the drift "
                             "baseline are computed with it")
        object.__setattr__(self, "precisions", tuple(v for v in VARIANTS if v in precisions))
        if self.default_variant not in self.precisions:
            raise ValueError(f"default_variant {self.default_variant!r} is not among the precisions "
                             f"{list(self.precisions)}")
        _ = self.drift_bounds  # a bad bound fails here, not after the export's slow steps
        if not isinstance(self.force, bool):
            raise TypeError(f"force must be a bool, got {type(self.force).__name__}")
        if self.vote_index not in VOTE_INDEX_CHOICES:
            raise ValueError(f"vote_index must be one of {list(VOTE_INDEX_CHOICES)}, got {self.vote_index!r}")
        if not (isinstance(self.target_far, (int, float)) and 0.0 <= self.target_far < 1.0):
            raise ValueError(f"target_far must be in [0, 1), got {self.target_far!r}")
        for name in ("non_artwork_photos", "impostor_views"):
            value = getattr(self, name)
            checks.integer(value, name, low=0)
        checks.integer(self.latency_runs, "latency_runs (0: do not time)", low=0)
        if not isinstance(self.tensorrt, bool):
            raise TypeError(f"tensorrt must be a bool, got {type(self.tensorrt).__name__}")
        if self.local_features is not None and not isinstance(self.local_features, FeatureConfig):
            raise TypeError(f"local_features must be a FeatureConfig or None, got {type(self.local_features).__name__}")
        if self.tensorrt and not any(p in self.precisions for p in trt_export.ENGINE_PRECISIONS):
            raise ValueError(f"tensorrt engines are built for the {list(trt_export.ENGINE_PRECISIONS)} variants; "
                             f"add one of them to the precisions {list(self.precisions)}")

    @property
    def drift_bounds(self) -> DriftBounds:
        """How far from fp32 a variant may drift and still go in the bundle."""
        return DriftBounds(min_cosine=self.min_cosine, min_top1_agreement=self.min_top1_agreement,
                           max_drop_points=self.max_drop_points)

    @property
    def engine_precisions(self) -> tuple[str, ...]:
        """The precisions to build TensorRT engines for (none unless ``tensorrt``)."""
        return tuple(p for p in trt_export.ENGINE_PRECISIONS if p in self.precisions) if self.tensorrt else ()


def variants_argument(text: str) -> tuple[str, ...]:
    """:func:`~muselens.export.precision.parse_variants` as an argparse ``type``."""
    import argparse

    try:
        return parse_variants(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_bundle_arguments(parser) -> None:
    """The flags of a bundle's :class:`ExportOptions` that ``muselens export`` and ``muselens retrain``
    share: the variants, the bundle's name and version, how many timed runs measure latency."""
    parser.add_argument("--precision", type=variants_argument, default=VARIANTS,
                        help=f"comma-separated variants to build, fp32 required (default: {','.join(VARIANTS)})")
    parser.add_argument("--name", default=None, help="bundle name (default: the museum folder's name)")
    parser.add_argument("--bundle-version", default=None, help="version string (default: UTC time YYYY.MM.DD-HHMMSS)")
    parser.add_argument("--latency-runs", type=int, default=10,
                        help="timed ONNX Runtime CPU runs per variant, 0 to skip (default: %(default)s)")
    parser.add_argument("--local-features", type=local_features_argument, default=FeatureConfig(),
                        metavar="{orb,rootsift,none}",
                        help="store every reference's local features for geometric verification "
                             "(default: orb; none: global descriptors only)")
    parser.add_argument("--vote-index", choices=VOTE_INDEX_CHOICES, default="auto",
                        help="keep the local features' vote index, built, in the bundle so that loading it does "
                             "not build it again (auto: from %d descriptors, about 230 references; about 180 "
                             "bytes a descriptor)" % VOTE_INDEX_MIN_DESCRIPTORS)


@dataclass
class ExportResult:
    bundle: Path
    archive: Path | None
    metrics: dict[str, dict[str, float]]
    threshold: Threshold
    parity: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # variant -> why it was left out of the bundle
    forced: dict[str, str] = field(default_factory=dict)  # variant -> why it would have been, but --force


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_data(trained, data: Path | str | None) -> Path:
    """The museum to build from: ``data``, else the one the run recorded in ``model.json``."""
    if data is None:
        recorded = trained.meta.get("data")
        if not recorded:
            raise ValueError(f"run {trained.run} does not record its training museum; pass --data")
        path = Path(recorded)
        if not path.is_dir():
            raise ValueError(f"run {trained.run} was trained on {path}, which no longer exists; "
                             "pass --data with the museum's current location")
        return path
    path = Path(data)
    if not path.is_dir():
        raise ValueError(f"--data {path} is not a directory")
    return path


def _museum_descriptors(describer: OrtDescriber, museum: MuseumDataset,
                        skipped: SkippedImages) -> dict[str, tuple[np.ndarray, list]]:
    return {split: describer.describe_records(getattr(museum, split), skipped)
            for split in ("references", "queries", "distractors")}


PHOTO_QUALITY = 85


def _readable_references(museum: MuseumDataset, skipped: SkippedImages) -> list[ImageRecord]:
    """The references that were described, in gallery row order."""
    unreadable = {entry["path"] for entry in skipped.to_list()}
    return [r for r in museum.references if str(r.path) not in unreadable]


class _Images(Sequence):
    """Images read when asked for: the threshold's phone views need every reference, not all in memory."""

    def __init__(self, records: Sequence[ImageRecord]):
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):
        return read_image(self.records[index].path)


def _reference_photos(describer: OrtDescriber, museum: MuseumDataset, skipped: SkippedImages,
                      rows: int) -> dict[int, bytes]:
    """Gallery row -> JPEG of that reference at recognition size (the rows are the readable references)."""
    records = _readable_references(museum, skipped)
    if len(records) != rows:
        raise ValueError(f"{len(records)} readable references but {rows} gallery rows; was a file changed "
                         "during the export?")
    photos = {}
    for row, record in enumerate(records):
        resized = describer.resize(read_image(record.path))
        photos[row] = encode_jpeg(resized, PHOTO_QUALITY)
    return photos


def _local_features(museum: MuseumDataset, skipped: SkippedImages, rows: int,
                    config: FeatureConfig) -> tuple[FeatureConfig, LocalFeatureStore]:
    """Every readable reference's local features, in gallery row order, from its full photo."""
    records = _readable_references(museum, skipped)
    if len(records) != rows:
        raise ValueError(f"{len(records)} readable references but {rows} gallery rows; was a file changed "
                         "during the export?")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="muselens-features") as pool:
        # OpenCV releases the GIL while it decodes and detects: a photo per core, in row order
        features = list(pool.map(lambda record: extract_features(read_image(record.path), config), records))
    return config, LocalFeatureStore.from_features(features, 32 if config.kind == "orb" else 128)


def _readable(records: Sequence[ImageRecord], skipped: SkippedImages) -> list[ImageRecord]:
    unreadable = {entry["path"] for entry in skipped.to_list()}
    return [r for r in records if str(r.path) not in unreadable]


def _keeps_vote_index(choice: str, descriptors: int) -> bool:
    """Whether the bundle keeps the built vote index (``ExportOptions.vote_index``)."""
    return descriptors > 0 and (choice == "always" or choice == "auto" and descriptors >= VOTE_INDEX_MIN_DESCRIPTORS)


def _verification_record(verifier: ShortlistVerifier, gallery: Gallery, museum: MuseumDataset,
                         described: dict, skipped: SkippedImages, progress: Callable[[str], None]) -> dict[str, Any]:
    """How much a fit weighs against the descriptor, measured on the museum's queries."""
    from muselens.export.evidence_weight import calibrate_evidence_weight
    from muselens.runtime.recognition.search import GallerySearch

    descriptors, ids = described["queries"]
    records = _readable(museum.queries, skipped)
    if len(records) != len(ids):
        raise ValueError(f"{len(records)} readable queries but {len(ids)} described; was a file changed during "
                         "the export?")
    record = calibrate_evidence_weight(verifier, GallerySearch(gallery, "exact"), _Images(records), descriptors, ids,
                                       progress)
    progress(f"a fit weighs {record['evidence_weight']:g} per e-fold of inliers ({record['how']}"
             + (f"; mP@1 by weight {record['mp_at_1_by_weight']}" if "mp_at_1_by_weight" in record else "") + ")")
    return record


def local_features_argument(text: str) -> FeatureConfig | None:
    """``orb``, ``rootsift`` or ``none`` as an argparse ``type``."""
    import argparse

    if text == "none":
        return None
    if text not in FEATURE_KINDS:
        raise argparse.ArgumentTypeError(f"choose one of {', '.join(FEATURE_KINDS)} or none, got {text!r}")
    return FeatureConfig(kind=text)


def calibrated_threshold(describer: Describer, gallery: Gallery, references: Sequence[np.ndarray],
                         reference_labels: Sequence[str], distractors: np.ndarray, target_far: float, *,
                         generated: int = DEFAULT_GENERATED, views_per_reference: int = DEFAULT_VIEWS_PER_REFERENCE,
                         seed: int = 0) -> Threshold:
    """The "no artwork" threshold at ``target_far``, from every source of negatives scored against
    the instance-averaged gallery: ``distractors`` (the museum's, described; may be empty), phone
    views of the ``references`` (RGB images labelled by artwork) and generated non-artwork photos,
    each described by ``describer``. A museum without distractors gets a real threshold too."""
    scores = negative_scores(describer.describe_many, gallery.average_descriptors, gallery.average_ids,
                             references=references, reference_labels=reference_labels, distractors=distractors,
                             generated=generated, views_per_reference=views_per_reference, seed=seed)
    return Threshold.from_calibration(calibrate_sources(scores, target_far))


def _labels(museum: MuseumDataset) -> list[LabelInfo]:
    return [LabelInfo(info.id, info.title, dict(info.metadata)) for info in museum.instances.values()]


def default_bundle_version() -> str:
    """``YYYY.MM.DD-HHMMSS`` (UTC): sortable, and new for every export unless one is given."""
    return time.strftime("%Y.%m.%d-%H%M%S", time.gmtime())


def _training_record(trained, data_path: Path, parity: dict[str, Any]) -> dict[str, Any]:
    """How the bundle's model was made, for the manifest's ``training`` field."""
    meta = trained.meta
    return {
        "run": str(Path(trained.run).resolve()),
        "data": str(data_path.resolve()),
        "backbone": meta["backbone"],
        "instances": len(meta["instance_ids"]),
        "model": {k: meta[k] for k in ("dim", "k", "feature_dim", "train_blocks", "eval_short_side") if k in meta},
        "config": trained.config.to_dict(),
        "parity": {"min_cosine": parity["min_cosine"], "sizes": [r["size"] for r in parity["sizes"]],
                   "tolerances": parity["tolerances"]},
    }


def _variant_row(path: Path, metrics: dict[str, float] | None, short_side: int,
                 runs: int, backend: str = "ort-cpu") -> dict[str, float]:
    row = dict(metrics or {})
    row["size_mb"] = path.stat().st_size / 1e6
    if runs:
        timing = latency_ms(path, (short_side, round(short_side * 4 / 3)), runs=runs, backend=backend)
        row["ms_p50"], row["ms_p95"] = timing["ms_p50"], timing["ms_p95"]
    return row


def _build_variants(fp32_path: Path, work: Path, museum: MuseumDataset, fp32: OrtDescriber,
                    options: ExportOptions, progress: Callable[[str], None]) -> dict[str, Path]:
    """The requested reduced-precision files, built from the fp32 model."""
    paths = {}
    if "fp16" in options.precisions:
        progress("converting to fp16")
        paths["fp16"] = convert_fp16(fp32_path, work / "fp16.onnx")
    if "int8" in options.precisions:
        images = calibration_images(museum, fp32, options.calibration_images)
        progress(f"quantizing to int8 (calibrated on {len(images)} references)")
        paths["int8"] = quantize_int8(fp32_path, work / "int8.onnx", images)
    return paths


def _drift(described: dict, variant: str) -> dict[str, float]:
    """The variant's descriptors against fp32's on every photo described (references ranked
    without themselves), from the descriptors already computed: nothing is described twice."""
    splits = ("references", "queries", "distractors")
    fp32 = [described["fp32"][split][0] for split in splits]
    ours = [described[variant][split][0] for split in splits]
    for split, a, b in zip(splits, fp32, ours):
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"{variant} described {b.shape[0]} {split} but fp32 {a.shape[0]}; was a file changed "
                             "during the export?")
    own = np.concatenate([np.arange(fp32[0].shape[0]), np.full(fp32[1].shape[0] + fp32[2].shape[0], -1)])
    return descriptor_agreement(np.concatenate(fp32), np.concatenate(ours), fp32[0], own)


def _measure_variants(paths: dict[str, Path], museum: MuseumDataset, described: dict, options: ExportOptions,
                      short_side: int, progress: Callable[[str], None]
                      ) -> tuple[dict[str, dict[str, float]], dict[str, str], dict[str, str]]:
    """Every variant's retrieval metrics (fp32 first) and drift from fp32, checked before anything
    slow, then its size and latency (CPU for ONNX, the GPU for engines). ``described`` holds
    fp32's descriptors already, and those of any engine. Returns the metrics of the variants kept,
    and the variants refused and forced, each with its reason; a refused default variant raises
    :class:`DriftError` (the bundle asked for cannot be made)."""
    metrics: dict[str, dict[str, float]] = {}
    refused: dict[str, str] = {}
    forced: dict[str, str] = {}
    hits = {}
    for variant in paths:
        if variant not in described:
            described[variant] = _museum_descriptors(OrtDescriber(paths[variant]), museum, SkippedImages())
        measured = None
        reason = None
        if museum.queries:
            # as served: the variant's queries searched in the bundle's gallery, fp32's references
            refs, ref_ids = described["fp32"]["references"]
            queries, query_ids = described[variant]["queries"]
            measured = retrieval_metrics(refs, ref_ids, queries, query_ids)
            hits[variant] = query_hits(refs, ref_ids, queries, query_ids)
            if variant != "fp32":
                measured["mp_at_1_drop_points"] = drop_points(metrics["fp32"], measured)
                if hits[variant].shape != hits["fp32"].shape:
                    raise ValueError(f"{variant} kept {hits[variant].size} queries but fp32 {hits['fp32'].size}; "
                                     "was a file changed during the export?")
                measured["mp_at_1_lost_queries"] = int(np.sum(hits["fp32"] > hits[variant]))
                measured["mp_at_1_gained_queries"] = int(np.sum(hits["fp32"] < hits[variant]))
                measured.update(_drift(described, variant))
                reason = check_drift(metrics["fp32"], measured, options.drift_bounds)
        if reason is not None and options.force:
            forced[variant] = reason
            progress(f"warning: {variant} drifts too far from fp32 ({reason}); kept because --force")
        elif reason is not None and variant == options.default_variant:
            raise DriftError(f"{variant}, the default variant, drifts too far from fp32: {reason}; choose another "
                             "--default-variant, or --force to keep it")
        elif reason is not None:
            refused[variant] = reason
            progress(f"warning: {variant} left out of the bundle, it drifts too far from fp32: {reason}")
            continue
        backend = "tensorrt" if is_engine_variant(variant) else "ort-cpu"
        metrics[variant] = _variant_row(paths[variant], measured, short_side, options.latency_runs, backend)
        progress(f"{variant}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics[variant].items()))
    return metrics, refused, forced


def _build_engines(paths: dict[str, Path], work: Path, museum: MuseumDataset, fp32: OrtDescriber,
                   described: dict, options: ExportOptions, sizes: tuple[tuple[int, int], ...],
                   parity_images: list[np.ndarray], progress: Callable[[str], None]) -> dict[str, Any]:
    """Build, check and describe the museum with each TensorRT engine; return their records."""
    records: dict[str, Any] = {}
    profile = trt_export.profile_from_contract(fp32.contract)
    for precision in options.engine_precisions:
        variant = engine_variant(precision)
        engine = work / f"{variant}.plan"
        images = calibration_images(museum, fp32, options.calibration_images) if precision == "int8" else None
        built = trt_export.build_engine(paths["fp32"], engine, precision=precision, profile=profile,
                                        calibration_images=images, workspace_gb=options.tensorrt_workspace_gb,
                                        contract=fp32.contract, progress=progress)
        parity = trt_export.verify_engine(engine, paths["fp32"], trt_export.sizes_in_profile(sizes, profile),
                                          precision=precision, images=parity_images)
        progress(f"{variant}: parity with fp32 ONNX Runtime at {len(parity['sizes'])} sizes, min descriptor "
                 f"cosine {parity['min_cosine']:.6f} (bound {parity['min_cosine_bound']})")
        describer: Describer = trt_export.engine_describer(engine, fp32.contract)
        described[variant] = _museum_descriptors(describer, museum, SkippedImages())
        paths[variant] = engine
        records[variant] = {**built["build"], "parity": {k: parity[k] for k in ("min_cosine", "min_cosine_bound",
                                                                                "sizes")}}
    return records


def export_bundle(run: Path | str, out: Path | str, *, data: Path | str | None = None,
                  options: ExportOptions = ExportOptions(),
                  progress: Callable[[str], None] = _stderr) -> ExportResult:
    """Build and write the bundle of training run ``run`` at ``out``; see the module docstring."""
    from muselens.training.trained import TrainedModel

    if not isinstance(options, ExportOptions):
        raise TypeError(f"options must be ExportOptions, got {type(options).__name__}")
    if options.tensorrt:
        trt_export.require_tensorrt()  # BackendUnavailable before any work: nothing half written
    trained = TrainedModel(Path(run))
    data_path = resolve_data(trained, data)
    museum = MuseumDataset.load(data_path)
    out = Path(out)
    if options.precisions != ("fp32",) and not museum.queries:
        raise ValueError(f"{data_path} has no queries: the drift of {list(options.precisions[1:])} "
                         "cannot be measured; export --precision fp32 only, or add queries")
    out.parent.mkdir(parents=True, exist_ok=True)
    short_side = trained.short_side
    skipped = SkippedImages()
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.export-", dir=out.parent) as tmp:
        work = Path(tmp)
        paths = {"fp32": work / "fp32.onnx"}
        progress(f"exporting {trained.run} ({trained.meta['backbone']}, D={trained.model.net.dim}, "
                 f"k={trained.model.net.k}) to ONNX")
        export_onnx(trained, paths["fp32"], sample_size=(short_side, round(short_side * 4 / 3)))
        parity_images = [read_image(r.path) for r in museum.references[:PARITY_IMAGES]]
        sizes = options.parity_sizes or parity_sizes(short_side, trained.max_aspect, k=trained.model.net.k,
                                                     stride=trained.contract.stride)
        parity = verify_onnx(trained, paths["fp32"], sizes, images=parity_images)
        progress(f"parity with PyTorch at {len(parity['sizes'])} sizes: min descriptor cosine "
                 f"{parity['min_cosine']:.7f}")
        record = _training_record(trained, data_path, parity)
        del trained  # the rest is ONNX Runtime only

        progress(f"describing {len(museum.references)} references, {len(museum.queries)} queries, "
                 f"{len(museum.distractors)} distractors with fp32 ONNX Runtime")
        fp32 = OrtDescriber(paths["fp32"])
        described = {"fp32": _museum_descriptors(fp32, museum, skipped)}
        refs, ref_ids = described["fp32"]["references"]
        if refs.shape[0] == 0:
            raise ValueError(f"no reference image of {data_path} could be read")
        gallery = Gallery(refs, np.asarray(ref_ids, dtype=str))
        photos = _reference_photos(fp32, museum, skipped, refs.shape[0]) if options.reference_photos else None
        features = None
        if options.local_features is not None:
            progress(f"extracting {options.local_features.kind} local features of {refs.shape[0]} references")
            features = _local_features(museum, skipped, refs.shape[0], options.local_features)
            progress(f"local features: {len(features[1].descriptors)} in all, "
                     f"{features[1].nbytes / max(1, len(features[1])) / 1e3:.1f} KB a reference")
        verification = vote_index = None
        if features is not None:
            progress(f"building the vote index over {len(features[1].descriptors)} local descriptors "
                     "(minutes for a few thousand references)")
            started = time.perf_counter()
            verifier = ShortlistVerifier(features[1], features[0], gallery.instance_ids)
            if _keeps_vote_index(options.vote_index, len(features[1].descriptors)):
                vote_index = verifier.voter.to_bytes()
                progress(f"vote index built in {time.perf_counter() - started:.1f} s; kept in the bundle "
                         f"({len(vote_index) / 1e6:.1f} MB)")
            verification = _verification_record(verifier, gallery, museum, described["fp32"], skipped, progress)
        progress(f"calibrating the 'no artwork' threshold: {len(museum.distractors)} distractors, "
                 f"{options.impostor_views} phone view(s) per reference, {options.non_artwork_photos} generated "
                 "photos of no artwork")
        threshold = calibrated_threshold(fp32, gallery, _Images(_readable_references(museum, skipped)), ref_ids,
                                         described["fp32"]["distractors"][0], options.target_far,
                                         generated=options.non_artwork_photos,
                                         views_per_reference=options.impostor_views)
        progress(f"threshold {threshold.describe()}")

        paths.update(_build_variants(paths["fp32"], work, museum, fp32, options, progress))
        if options.tensorrt:
            record["tensorrt"] = _build_engines(paths, work, museum, fp32, described, options, tuple(sizes),
                                                parity_images, progress)
        metrics, refused, forced = _measure_variants(paths, museum, described, options, short_side, progress)
        for variant in refused:
            del paths[variant]
        record["drift"] = {"bounds": dataclasses.asdict(options.drift_bounds), "refused": refused, "forced": forced}
        bundle_metrics = {v: m for v, m in metrics.items() if "mp_at_1" in m}

        progress(f"writing bundle {out}")
        record["skipped_images"] = len(skipped)
        write_bundle(
            out, name=options.name or data_path.resolve().name,
            bundle_version=options.bundle_version or default_bundle_version(),
            backbone=record["backbone"], descriptor=fp32.contract, model_files=paths, gallery=gallery,
            labels=_labels(museum), training=record, data_digest=dataset_digest(data_path),
            metrics=bundle_metrics, threshold=threshold, default_variant=options.default_variant,
            precisions={v: v.removesuffix(ENGINE_SUFFIX) if is_engine_variant(v) else v for v in paths},
            reference_photos=photos, local_features=features, verification=verification, vote_index=vote_index,
        )
    archive = None
    if options.archive:
        archive = pack_bundle(out, out.parent / f"{out.name}.tar.gz")
        progress(f"archive {archive}")
    return ExportResult(out, archive, metrics, threshold, parity, skipped.to_list(), refused, forced)

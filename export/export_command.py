"""``muselens export RUN --out BUNDLE``: a trained run to the museum's checked, versioned bundle.

A thin layer over :func:`muselens.export.bundle.export_bundle`: parse flags, print progress on
stderr and the table of variants on stdout, then each variant left out of the bundle for drifting
too far from fp32, with the reason. Exit status 0 on success (also when a variant was left out),
1 when the ``--default-variant`` drifts too far or ONNX Runtime disagrees with PyTorch or a
TensorRT engine with ONNX Runtime (nothing is written then), 2 for unusable inputs (not a
finished run, no museum, bad flags) or a machine that cannot do what was asked (``--tensorrt``
without TensorRT, checked before any work; an engine TensorRT cannot build; an unwritable
``--out`` or a full disk).
``--triton DIR`` also writes a Triton model repository for the bundle's default ONNX variant
(:mod:`muselens.export.triton`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from muselens.export.bundle import DEFAULT_TARGET_FAR, ExportOptions, add_bundle_arguments, export_bundle
from muselens.export.export_report import summary, write_results_json
from muselens.export.onnx_export import ParityError
from muselens.export.precision import (COSINE_PERCENTILE, DEFAULT_CALIBRATION_IMAGES, DEFAULT_MAX_DROP_POINTS,
                                       DEFAULT_MIN_COSINE, DEFAULT_MIN_TOP1_AGREEMENT, DRIFT_SIGNIFICANCE, VARIANTS,
                                       DriftError)
from muselens.export.tensorrt_build import DEFAULT_WORKSPACE_GB, EngineBuildError
from muselens.export.triton import KINDS, write_triton_repository
from muselens.runtime.bundle import BundleError
from muselens.runtime.engine.backends import BackendUnavailable
from muselens.core.metrics.threshold import DEFAULT_GENERATED, DEFAULT_VIEWS_PER_REFERENCE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="finished training run folder (model.pt, model.json, config.yaml)")
    parser.add_argument("--out", required=True, help="bundle folder to write (replaced atomically if it is a bundle)")
    add_bundle_arguments(parser)
    parser.add_argument("--data", default=None,
                        help="museum dataset folder (default: the museum the run was trained on)")
    drift = parser.add_argument_group(
        "drift from fp32", "a variant failing a bound is left out of the bundle with a warning (fp32 is always "
        "kept); the bounds rest on every photo of the museum (references, queries, distractors), so they hold "
        "on a museum with few queries")
    drift.add_argument("--min-cosine", type=float, default=DEFAULT_MIN_COSINE,
                       help=f"lowest {COSINE_PERCENTILE}th percentile, over the photos, of the cosine between a "
                            "variant's descriptor and fp32's (default: %(default)s)")
    drift.add_argument("--min-top1-agreement", type=float, default=DEFAULT_MIN_TOP1_AGREEMENT,
                       help="lowest fraction of photos whose best gallery match is fp32's (default: %(default)s)")
    drift.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP_POINTS,
                       help="largest mP@1 drop, in points, against fp32; only a drop the queries make significant "
                            f"(sign test, p < {DRIFT_SIGNIFICANCE:g}) counts: on 20 queries one photo is 5 points "
                            "(default: %(default)s)")
    drift.add_argument("--force", action="store_true",
                       help="keep variants that fail a drift bound (without it a failing --default-variant "
                            "fails the export, exit 1: the bundle asked for cannot be made)")
    threshold = parser.add_argument_group(
        "'no artwork' threshold", "calibrated on the museum's distractors (if any), phone views of each reference "
        "scored against the other artworks, and generated photos of no artwork; the highest per-source threshold "
        "is kept")
    threshold.add_argument("--target-far", type=float, default=DEFAULT_TARGET_FAR,
                           help="false-accept rate the threshold is calibrated for, on each source (default: "
                                "%(default)s)")
    threshold.add_argument("--non-artwork-photos", type=int, default=DEFAULT_GENERATED,
                           help="generated photos of walls, floors and visitors (default: %(default)s)")
    threshold.add_argument("--impostor-views", type=int, default=DEFAULT_VIEWS_PER_REFERENCE,
                           help="phone views per reference, each scored against every other artwork "
                                "(default: %(default)s)")
    parser.add_argument("--archive", action="store_true", help="also write BUNDLE.tar.gz beside the bundle folder")
    parser.add_argument("--default-variant", default="fp32", choices=VARIANTS,
                        help="variant the runtime loads unless told otherwise (default: %(default)s)")
    parser.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                        help="reference images used to calibrate int8 (default: %(default)s)")
    parser.add_argument("--tensorrt", action="store_true",
                        help="also build TensorRT engines (fp16-trt, int8-trt) for the fp16/int8 variants "
                             "(needs tensorrt>=10 and cuda-python on a GPU machine)")
    parser.add_argument("--tensorrt-workspace-gb", type=float, default=DEFAULT_WORKSPACE_GB,
                        help="TensorRT builder workspace limit in GiB (default: %(default)s)")
    parser.add_argument("--no-reference-photos", action="store_true",
                        help="leave the reference photos out of the bundle (smaller; no reference-side heatmaps)")
    parser.add_argument("--results-json", type=Path, default=None, metavar="FILE",
                        help="also write the variants' metrics, the threshold and the command as JSON "
                             "(what benchmarks/RESULTS.md is generated from)")
    parser.add_argument("--triton", type=Path, default=None, metavar="DIR",
                        help="also write a Triton model repository (DIR/<name>/config.pbtxt, 1/model.onnx)")
    parser.add_argument("--triton-kind", choices=KINDS, default="KIND_CPU",
                        help="Triton instance kind (default: %(default)s)")
    parser.add_argument("--triton-instances", type=int, default=1,
                        help="Triton model instances (default: %(default)s)")


def _triton_name(args: argparse.Namespace) -> str | None:
    """The Triton model name (``--name``, else the bundle folder's), its folder checked free up front."""
    if args.triton is None:
        return None
    name = args.name or Path(args.out).name
    if (args.triton / name).exists():
        raise ValueError(f"--triton: {args.triton / name} already exists; remove it or pass another --name")
    return name


def main(args: argparse.Namespace) -> int:
    from muselens.training.checkpoint import CheckpointError

    try:
        options = ExportOptions(
            precisions=args.precision, max_drop_points=args.max_drop, force=args.force,
            min_cosine=args.min_cosine, min_top1_agreement=args.min_top1_agreement,
            target_far=args.target_far, non_artwork_photos=args.non_artwork_photos,
            impostor_views=args.impostor_views, archive=args.archive, name=args.name,
            bundle_version=args.bundle_version, default_variant=args.default_variant,
            calibration_images=args.calibration_images, latency_runs=args.latency_runs,
            reference_photos=not args.no_reference_photos, local_features=args.local_features,
            vote_index=args.vote_index,
            tensorrt=args.tensorrt, tensorrt_workspace_gb=args.tensorrt_workspace_gb,
        )
        triton_name = _triton_name(args)
        result = export_bundle(args.run, args.out, data=args.data, options=options)
        if args.triton is not None:
            repo = write_triton_repository(result.bundle, args.triton, model_name=triton_name,
                                           instance_count=args.triton_instances, kind=args.triton_kind)
            print(f"triton model {repo}", file=sys.stderr)
    except (DriftError, ParityError) as exc:  # the export works but its result (or default variant) is refused
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (CheckpointError, BundleError, BackendUnavailable, EngineBuildError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # bad inputs, or this machine cannot do what was asked
        return 2
    except OSError as exc:  # an unwritable --out folder, a full disk while exporting (before the bundle writer)
        print(f"error: could not write the export to {args.out}: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    if args.results_json is not None:
        write_results_json(args.results_json, result, "muselens " + " ".join(getattr(args, "argv", [])))
        print(f"results {args.results_json}")
    return 0

"""``muselens retrain DATA --out BUNDLE``: train, evaluate, export and validate a museum in one go.

The steps are the existing commands' library functions, not copies of them: the configuration
is resolved exactly as ``muselens train`` does (:func:`muselens.training.train_command.overrides_from_args`
and :func:`muselens.training.train_config.load_config`), the run is a
:class:`~muselens.training.run.TrainingRun` in ``--run-dir`` (default ``BUNDLE.run``; ``--resume``
continues it), its validation metrics come from the run's history, and the bundle is written by
:func:`muselens.export.bundle.export_bundle`. Then the bundle is validated the way the service
will use it, with no torch in the loop (:func:`validate_bundle`): loaded with
:func:`~muselens.runtime.bundle.load_bundle`, the museum's queries described with the runtime's
:class:`~muselens.runtime.engine.Describer` on the bundle's default model and contract, their
mP@1 against the bundle's gallery must equal the manifest's fp32 metric (within 1e-6), and two
references described again must reproduce their gallery rows (cosine >= 0.9999).

The summary is printed on stdout and written to ``BUNDLE.retrain.json`` (beside the bundle: a
bundle folder holds only the files its manifest names), with the variants left out of the
bundle for drifting too far from fp32 and why (``refused_variants``; fp32 is always kept, so
training is never lost to a variant). Progress goes to stderr. Exit status as ``muselens
export``: 0 success, 1 a result refused (parity, validation), 2 unusable inputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from muselens.export.precision import VARIANTS
from muselens.runtime.bundle import BundleError, Threshold

METRIC_TOLERANCE = 1e-6
MIN_REFERENCE_COSINE = 0.9999
REFERENCES_CHECKED = 2


class ValidationError(RuntimeError):
    """The bundle, run through the runtime, does not reproduce what export recorded."""

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bundle_run_dir(out: Path | str) -> Path:
    """The default training run folder of a bundle: ``BUNDLE.run`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".run")


def summary_path(out: Path | str) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".retrain.json")


def validation_metrics(history: list[dict[str, Any]]) -> dict[str, float]:
    """The last validation row of the run's last stage (``val_*`` keys); empty without queries."""
    if not history:
        raise ValueError("the training run has no history")
    last_stage = max(int(row["stage"]) for row in history)
    rows = [row for row in history if int(row["stage"]) == last_stage and "val_mp_at_1" in row]
    if not rows:
        return {}
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val_")} | {"stage": last_stage}


def validate_bundle(bundle_path: Path | str, data: Path | str, *,
                    progress: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Run the bundle through the runtime only and check it reproduces its manifest (see module doc).

    Imports nothing from training or export, so it runs in a process without torch.
    Raises :class:`ValidationError` with the report when a check fails.
    """
    from muselens.runtime.bundle import load_bundle
    from muselens.core.data.images import SkippedImages, read_images
    from muselens.core.data.museum_dataset import MuseumDataset
    from muselens.runtime.engine import Describer
    from muselens.core.metrics import evaluate_retrieval, queries_in_gallery, similarity

    museum = MuseumDataset.load(Path(data))
    with load_bundle(bundle_path) as bundle:
        manifest = bundle.manifest
        describer = Describer.open(bundle.model_path(), contract=manifest.descriptor)
        report: dict[str, Any] = {"bundle": str(bundle_path), "variant": manifest.default_variant,
                                  "backend": describer.backend.describe()}
        failures = []
        gallery = bundle.gallery
        expected = manifest.metrics.get("fp32", {}).get("mp_at_1")
        if museum.queries:
            if expected is None:
                raise ValueError(f"{bundle_path}: the manifest records no fp32 mP@1 to validate against")
            queries, query_ids = describer.describe_records(museum.queries, SkippedImages())
            q_ids = np.asarray(query_ids, dtype=str)
            keep = queries_in_gallery(q_ids, gallery.instance_ids)
            measured = evaluate_retrieval(similarity(queries[keep], gallery.descriptors), q_ids[keep],
                                          gallery.instance_ids).mp_at_1
            report["mp_at_1"] = {"runtime": float(measured), "manifest": float(expected),
                                 "tolerance": METRIC_TOLERANCE}
            progress(f"runtime mP@1 {measured:.6f} (manifest {expected:.6f})")
            if abs(measured - expected) > METRIC_TOLERANCE:
                failures.append(f"runtime mP@1 {measured:.6f} differs from the manifest's fp32 {expected:.6f}")
        readable = list(read_images(museum.references, lambda r: r.path, SkippedImages()))
        if len(readable) != gallery.n_images:
            raise ValueError(f"{data} has {len(readable)} readable references but the gallery holds "
                             f"{gallery.n_images}: is this the museum the bundle was exported from?")
        picks = sorted({0, len(readable) - 1})[:REFERENCES_CHECKED]
        rows = []
        for row in picks:
            record, image = readable[row]
            cosine = float(np.dot(describer.describe(image).astype(np.float64), gallery.descriptors[row]))
            rows.append({"reference": str(record.path), "gallery_row": row, "cosine": cosine})
            if record.instance_id != gallery.instance_ids[row]:
                failures.append(f"gallery row {row} is {gallery.instance_ids[row]!r}, reference {record.path} "
                                f"is {record.instance_id!r}")
            if cosine < MIN_REFERENCE_COSINE:
                failures.append(f"reference {record.path} described again has cosine {cosine:.6f} < "
                                f"{MIN_REFERENCE_COSINE} to its gallery row {row}")
        report["references"] = rows
        progress("re-described references: " + ", ".join(f"row {r['gallery_row']} cosine {r['cosine']:.6f}"
                                                         for r in rows))
    report["passed"] = not failures
    if failures:
        raise ValidationError("bundle validation failed: " + "; ".join(failures), report)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from muselens.export.export_command import _precisions
    from muselens.training.backbones.backbone_registry import BACKBONES
    from muselens.training.train_command import _set

    parser.add_argument("data", type=Path, help="museum dataset directory")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    parser.add_argument("--config", type=Path, help="museum.yaml with any TrainConfig fields")
    parser.add_argument("--backbone", choices=sorted(BACKBONES))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--set", type=_set, action="append", metavar="KEY=VALUE",
                        help="override one setting, e.g. --set stage1.epochs=5 (repeatable)")
    parser.add_argument("--precision", type=_precisions, default=VARIANTS,
                        help=f"comma-separated variants to export, fp32 required (default: {','.join(VARIANTS)})")
    parser.add_argument("--device", default="cpu", help="training device: cpu or cuda")
    parser.add_argument("--run-dir", type=Path, default=None, help="training run folder (default: BUNDLE.run)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir after a stop")
    parser.add_argument("--no-pretrained", action="store_true",
                        help="start from random weights instead of ImageNet's (tests, ablations)")
    parser.add_argument("--name", default=None, help="bundle name (default: the museum folder's name)")
    parser.add_argument("--bundle-version", default=None, help="version string (default: UTC time)")
    parser.add_argument("--latency-runs", type=int, default=10,
                        help="timed ONNX Runtime CPU runs per variant, 0 to skip (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no training progress bars")


def _train(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    from muselens.training.train_command import overrides_from_args
    from muselens.training.train_config import load_config
    from muselens.training.run import TrainingRun

    args.stages = None  # a bundle needs all three stages (stage 3 makes the descriptor)
    config = load_config(args.config, overrides_from_args(args))
    run = TrainingRun(args.data, run_dir, config, device=args.device, resume=args.resume,
                      progress=not args.no_progress, pretrained=not args.no_pretrained)
    return run.run()


def retrain(args: argparse.Namespace, progress: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """The four steps; returns the summary written to ``BUNDLE.retrain.json``."""
    from muselens.export.bundle import ExportOptions, export_bundle

    if not Path(args.data).is_dir():
        raise ValueError(f"museum {args.data} is not a directory")
    run_dir = Path(args.run_dir) if args.run_dir is not None else bundle_run_dir(args.out)
    options = ExportOptions(precisions=args.precision, name=args.name, bundle_version=args.bundle_version,
                            latency_runs=args.latency_runs)
    progress(f"training {args.data} into {run_dir}")
    summary = _train(args, run_dir)
    evaluation = validation_metrics(summary["history"])
    progress("validation: " + (", ".join(f"{k} {v:.4f}" for k, v in evaluation.items() if k != "stage")
                               or "no queries"))
    progress(f"exporting {run_dir} to {args.out}")
    result = export_bundle(run_dir, args.out, data=args.data, options=options, progress=progress)
    progress("validating the bundle through the runtime (no torch)")
    validation = validate_bundle(result.bundle, args.data, progress=progress)
    out = {
        "format": "muselens-retrain/1", "data": str(Path(args.data).resolve()), "run": str(run_dir.resolve()),
        "bundle": str(Path(result.bundle).resolve()), "training": {"stages": summary["stages"],
                                                                   "device": summary["device"]},
        "validation_metrics": evaluation, "export_metrics": result.metrics, "refused_variants": result.refused,
        "threshold": result.threshold.to_dict(), "runtime_validation": validation,
    }
    path = summary_path(args.out)
    path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out


def main(args: argparse.Namespace) -> int:
    from muselens.export.onnx_export import ParityError
    from muselens.export.precision import DriftError
    from muselens.core.data.museum_dataset import DatasetError
    from muselens.training.checkpoint import CheckpointError
    from muselens.training.train_config import ConfigError

    try:
        out = retrain(args)
    except (DriftError, ParityError, ValidationError) as exc:  # done, but the result is refused
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, DatasetError, CheckpointError, BundleError, FileExistsError, ValueError,
            TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    val = out["validation_metrics"]
    fp32 = out["export_metrics"]["fp32"]
    rt = out["runtime_validation"]
    print(f"run        {out['run']}")
    if val:
        print(f"validation mP@1 {100 * val['val_mp_at_1']:.2f}  mAP {100 * val['val_map']:.2f} (PyTorch, stage "
              f"{val['stage']})")
    if "mp_at_1" in fp32:
        print(f"bundle     mP@1 {100 * fp32['mp_at_1']:.2f}  mAP {100 * fp32['map']:.2f} (fp32 ONNX Runtime)")
    if "mp_at_1" in rt:
        print(f"runtime    mP@1 {100 * rt['mp_at_1']['runtime']:.2f} (matches the manifest)")
    print(f"references re-described: min cosine {min(r['cosine'] for r in rt['references']):.6f}")
    for variant, reason in out["refused_variants"].items():
        print(f"refused    {variant}: {reason}")
    print(f"threshold  {Threshold.from_dict(out['threshold']).describe()}")
    print(f"bundle     {out['bundle']}")
    print(f"summary    {summary_path(args.out)}")
    return 0

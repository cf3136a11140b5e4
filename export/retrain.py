"""Train, evaluate, export and validate a museum in one go (:func:`retrain`; the command is
:mod:`muselens.export.retrain_command`).

The steps are the library functions ``muselens train`` and ``muselens export`` call: the run is a
:class:`~muselens.training.run.TrainingRun` of the given configuration in ``run_dir`` (default
``BUNDLE.run``; ``resume`` continues it), its validation metrics come from the run's history, and
the bundle is written by :func:`muselens.export.bundle.export_bundle`. Then the bundle is
validated the way the service will use it, with no torch in the loop (:func:`validate_bundle`):
loaded with :func:`~muselens.runtime.bundle.load_bundle`, the museum's queries described with the
runtime's :class:`~muselens.runtime.engine.Describer` on the bundle's default model and contract,
their mP@1 against the bundle's gallery must equal the manifest's fp32 metric (within 1e-6), and
two references described again must reproduce their gallery rows (cosine >= 0.9999).

The summary is written to ``BUNDLE.retrain.json`` (beside the bundle: a bundle folder holds only
the files its manifest names), with the variants left out of the bundle for drifting too far
from fp32 and why (``refused_variants``; fp32 is always kept, so training is never lost to a
variant).
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


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


def _train(data: Path | str, run_dir: Path, config, **options: Any) -> dict[str, Any]:
    """What ``muselens train`` runs: a :class:`~muselens.training.run.TrainingRun`, to its end."""
    from muselens.training.run import TrainingRun

    return TrainingRun(data, run_dir, config, **options).run()


def retrain(data: Path | str, out: Path | str, config, options, *, device: str = "cpu",
            run_dir: Path | str | None = None, resume: bool = False, pretrained: bool = True,
            train_progress: bool = True, progress: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Train ``data`` with ``config`` (a :class:`~muselens.training.train_config.TrainConfig`) in
    ``run_dir`` (default ``OUT.run``), export the bundle to ``out`` with ``options`` (an
    :class:`~muselens.export.bundle.ExportOptions`), validate it through the runtime; returns the
    summary, also written to ``OUT.retrain.json``."""
    from muselens.export.bundle import export_bundle

    if not Path(data).is_dir():
        raise ValueError(f"museum {data} is not a directory")
    run_dir = Path(run_dir) if run_dir is not None else bundle_run_dir(out)
    progress(f"training {data} into {run_dir}")
    trained = _train(data, run_dir, config, device=device, resume=resume, progress=train_progress,
                     pretrained=pretrained)
    evaluation = validation_metrics(trained["history"])
    progress("validation: " + (", ".join(f"{k} {v:.4f}" for k, v in evaluation.items() if k != "stage")
                               or "no queries"))
    progress(f"exporting {run_dir} to {out}")
    result = export_bundle(run_dir, out, data=data, options=options, progress=progress)
    progress("validating the bundle through the runtime (no torch)")
    validation = validate_bundle(result.bundle, data, progress=progress)
    summary = {
        "format": "muselens-retrain/1", "data": str(Path(data).resolve()), "run": str(run_dir.resolve()),
        "bundle": str(Path(result.bundle).resolve()), "training": {"stages": trained["stages"],
                                                                   "device": trained["device"]},
        "validation_metrics": evaluation, "export_metrics": result.metrics, "refused_variants": result.refused,
        "threshold": result.threshold.to_dict(), "runtime_validation": validation,
    }
    summary_path(out).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary

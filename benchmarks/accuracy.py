"""``muselens bench accuracy DATA``: the thesis' Table 5.3 in one command.

Rows are methods -- SIFT, the ImageNet baselines (IM-MAC/SPoC/GeM/R-MAC, single- and multi-scale,
and the logits), a training run's fine-tuned network ("FT", its pooled last conv layer) and its
region descriptor ("proposed"), one run per alternative stage-3 loss of papers 002/003 (trained
here with ``muselens train``'s machinery, or given), and the exported bundle's variants described
through the torch-free runtime. Columns are mP@1 and mAP of each *variant*: plain, with
instance-averaging, query expansion, database-side augmentation, or several (5.4.2-5.4.4).

Every number comes from :func:`muselens.training.evaluation.evaluate_method`; this module only
decides what to measure and avoids paying twice for it: each image is described once per method
whatever the variant (:class:`DescriptorStore`), and the ImageNet baselines read every pooling and
scale from one pass of the CNN (:class:`MemoBackbone`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muselens.benchmarks import common
from muselens.benchmarks.accuracy_report import (PLOT, PROPOSED, comparison, comparison_line, markdown, plot,
                                                 shipped_table, text_table)
from muselens.benchmarks.alternative_losses import alternative_config, ensure_alternative, training_seconds
from muselens.benchmarks.descriptor_store import DescriptorStore, MemoBackbone
from muselens.benchmarks.served_table import served_table
from muselens.runtime.bundle import BundleError, load_bundle
from muselens.runtime.bundle.manifest import is_engine_variant
from muselens.core.data.museum_dataset import DatasetError, MuseumDataset
from muselens.runtime.engine.backends import BACKENDS, DEFAULT_BACKEND
from muselens.core.metrics.threshold import DEFAULT_TARGET_FAR
from muselens.training.backbones.backbone_registry import BACKBONES, DEFAULT_BACKBONE, build_backbone
from muselens.training.checkpoint import CheckpointError
from muselens.training.train_config import TrainConfig, config_overrides, load_config, setting_argument
from muselens.training.baselines.imagenet import IM_METHODS, build_im_extractor
from muselens.training.evaluation.methods import DescriptorMethod, PairwiseMethod, build_method
from muselens.training.evaluation.protocol import (EvalOptions, GivenThreshold, MethodResult, evaluate_method,
                                                   unknown_images)
from muselens.training.losses import LOSSES

IM_POOLED = tuple(name for name, spec in IM_METHODS.items() if spec.output == "pooled")
BASELINES = ("sift", *IM_METHODS, *(f"{name}-ms" for name in IM_POOLED))
LABELS = {"sift": "SIFT", "im-mac": "IM-MAC", "im-spoc": "IM-SPoC", "im-gem": "IM-GeM", "im-rmac": "IM-R-MAC",
          "im-logits": "IM logits"}
# A bench kind's interface (benchmarks/bench_command.py); markdown is accuracy_report's.
__all__ = ["add_arguments", "main", "markdown"]

VARIANT_PARTS = ("ia", "qe", "dba")
DEFAULT_VARIANTS = ("plain", "ia", "qe", "dba", "ia+qe+dba")


# -- what is measured ---------------------------------------------------------------------------

def baseline_label(method: str) -> str:
    base = method.removesuffix("-ms")
    return LABELS[base] + (" multi-scale" if method.endswith("-ms") else "")


def parse_variants(text: str) -> list[str]:
    """``plain,ia,qe+dba`` -> canonical names (parts in ia, qe, dba order), refusing unknown parts."""
    out: list[str] = []
    for raw in (v.strip() for v in text.split(",")):
        if not raw:
            continue
        if raw == "plain":
            name = raw
        else:
            parts = raw.split("+")
            unknown = [p for p in parts if p not in VARIANT_PARTS]
            if unknown or len(set(parts)) != len(parts):
                raise argparse.ArgumentTypeError(
                    f"variant {raw!r}: use 'plain' or '+'-joined parts of {', '.join(VARIANT_PARTS)}")
            name = "+".join(p for p in VARIANT_PARTS if p in parts)
        if name in out:
            raise argparse.ArgumentTypeError(f"variant {name!r} is listed twice")
        out.append(name)
    if not out:
        raise argparse.ArgumentTypeError("give at least one variant, e.g. plain,ia")
    return out


def variant_options(variant: str, *, qe: int, dba: int, clustering: bool = False,
                    shipped_far: float = DEFAULT_TARGET_FAR) -> EvalOptions:
    parts = set() if variant == "plain" else set(variant.split("+"))
    return EvalOptions(instance_avg="ia" in parts, qe=qe if "qe" in parts else 0, dba=dba if "dba" in parts else 0,
                       clustering=clustering, shipped_far=shipped_far)


def parse_methods(text: str) -> list[str]:
    if text.strip() == "none":
        return []
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown baseline(s) {unknown or text!r}; choose from "
                                         f"{', '.join(BASELINES)} or 'none'")
    return list(dict.fromkeys(names))


def parse_runs(text: str) -> dict[str, Path]:
    """``proposed=RUN,batch-hard-hinge=RUN2`` -> {name: folder}; each must be a finished run."""
    runs: dict[str, Path] = {}
    for item in (v.strip() for v in text.split(",")):
        if not item:
            continue
        name, sep, folder = item.partition("=")
        name = name.strip()
        if not sep or not name or not folder.strip():
            raise argparse.ArgumentTypeError(f"--runs wants NAME=RUN_DIR items, got {item!r}")
        if name in runs:
            raise argparse.ArgumentTypeError(f"run name {name!r} is given twice")
        runs[name] = Path(folder.strip())
    if not runs:
        raise argparse.ArgumentTypeError("--runs is empty")
    return runs


def parse_losses(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in LOSSES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown loss(es) {unknown or text!r}; choose from {', '.join(LOSSES)}")
    return list(dict.fromkeys(names))


# -- the rows -----------------------------------------------------------------------------------

@dataclass
class Row:
    label: str
    group: str  # baseline | trained | alternative | bundle
    method: DescriptorMethod | PairwiseMethod
    source: dict[str, Any]
    threshold: GivenThreshold | None = None  # the shipped threshold, when the row is a bundle's


def baseline_rows(methods: Sequence[str], *, backbone: str, size: int | None, device: str, workers: int,
                  batch_size: int = 16) -> list[Callable[[], list[Row]]]:
    """Builders (called when reached, so memory holds one group at a time): SIFT, then every IM method
    sharing one :class:`MemoBackbone`."""
    groups: list[Callable[[], list[Row]]] = []
    if "sift" in methods:
        groups.append(lambda: [Row("SIFT", "baseline", build_method("sift", size=size, workers=workers),
                                   {"method": "sift"})])
    im = [m for m in methods if m != "sift"]
    if im:
        def build_im() -> list[Row]:
            net = MemoBackbone(build_backbone(backbone, pretrained=True))
            extractors = {m: build_im_extractor(m.removesuffix("-ms"), net, size=size, multiscale=m.endswith("-ms"),
                                                device=device, batch_size=batch_size) for m in im}
            store = DescriptorStore({m: ex.extract for m, ex in extractors.items()}, after=net.forget)
            return [Row(baseline_label(m), "baseline", store.method(m, extractors[m].describe()), {"method": m})
                    for m in im]
        groups.append(build_im)
    return groups


def trained_rows(name: str, run: Path, *, device: str, group: str) -> Callable[[], list[Row]]:
    """A run's two descriptors: the pooled last conv layer (GeM; "FT" for the proposed run, paper
    002's pooled layer for the others) and, when stage 3 ran, the region descriptor (its embedding)."""
    def build() -> list[Row]:
        from muselens.training.trained import TrainedModel

        model = TrainedModel(run, device=device)
        kinds = {"ft": "FT" if name == PROPOSED else f"{name} pooled"}
        if 3 in model.config.stages:
            kinds["proposed"] = name
        store = DescriptorStore({kind: (lambda images, kind=kind: model.describe(images, kind)) for kind in kinds})
        source = {"run": str(run), "stage3_loss": model.config.stage3.loss}
        return [Row(label, group, store.method(kind, model.info(kind)), {**source, "kind": kind})
                for kind, label in kinds.items()]
    return build


def bundle_variants(bundle: Path, backend: str) -> tuple[list[str], str, dict[str, Any], list[str]]:
    """(variants to measure, default variant, the export's own metrics, variants skipped and why)."""
    with load_bundle(bundle) as loaded:
        manifest = loaded.manifest
        variants, skipped = [], []
        for variant in sorted(manifest.models, key=lambda v: (v != manifest.default_variant, v)):
            if is_engine_variant(variant) and backend != "tensorrt":
                skipped.append(f"{variant} (a TensorRT engine; pass --bundle-backend tensorrt on its GPU)")
            else:
                variants.append(variant)
        metrics = {v: {k: float(m[k]) for k in ("mp_at_1", "map", "mp_at_1_ia", "map_ia") if k in m}
                   for v, m in manifest.metrics.items()}
        return variants, manifest.default_variant, metrics, skipped


def bundle_threshold(bundle: Path) -> GivenThreshold:
    """The threshold the bundle ships (its manifest's): its rows are measured at it, not recalibrated."""
    with load_bundle(bundle) as loaded:
        t = loaded.manifest.threshold
        return GivenThreshold(float(t.value), f"the bundle manifest's: {t.describe()}", t.to_dict())


def bundle_row(bundle: Path, variant: str, *, backend: str, threads: int | None,
               threshold: GivenThreshold | None = None) -> Callable[[], list[Row]]:
    def build() -> list[Row]:
        from muselens.runtime.recognition.served_model import ServedModel, ServingConfig

        served = ServedModel.load(bundle, ServingConfig(backend=backend, variant=variant, threads=threads))
        store = DescriptorStore({variant: served.describer.describe_many})
        info = {"bundle": str(bundle), "variant": variant, "backend": served.describer.backend.describe(),
                "bundle_version": served.bundle_version, "short_side": served.describer.short_side}
        return [Row(f"bundle {variant}", "bundle", store.method(variant, info), info, threshold)]
    return build


# -- the command --------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="museum dataset directory (references/, queries/, distractors/)")
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json, accuracy.png, runs/")
    parser.add_argument("--runs", type=parse_runs, default={}, metavar="NAME=RUN[,...]",
                        help="finished training runs; 'proposed' gives the FT and proposed rows, any other "
                             "name a '<name>' and '<name> pooled' row")
    parser.add_argument("--train-alternatives", type=parse_losses, default=[], metavar="LOSS[,LOSS...]",
                        help="train one run per stage-3 loss into OUT/runs/<loss> (finished ones are reused); "
                             "losses: " + ", ".join(LOSSES))
    parser.add_argument("--train-config", type=Path,
                        help="their configuration (default: the proposed run's config.yaml, else the defaults)")
    parser.add_argument("--train-set", type=setting_argument, action="append", metavar="KEY=VALUE",
                        help="override one training setting, as muselens train --set (repeatable)")
    parser.add_argument("--bundle", type=Path, help="exported bundle: one row per variant, through the runtime")
    parser.add_argument("--no-served", action="store_true",
                        help="with --bundle: skip its rows through `muselens serve` (unary verified, descriptor "
                             "only, stream), measured by default")
    parser.add_argument("--bundle-backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    parser.add_argument("--methods", type=parse_methods, default=list(BASELINES), metavar="M[,M...]|none",
                        help="baselines to measure (default all): " + ", ".join(BASELINES))
    parser.add_argument("--variants", type=parse_variants, default=list(DEFAULT_VARIANTS), metavar="V[,V...]",
                        help="plain and '+'-joined ia, qe, dba (default %(default)s)")
    parser.add_argument("--qe", type=int, default=1, metavar="K", help="query expansion with the top K (default 1)")
    parser.add_argument("--dba", type=int, default=1, metavar="K", help="DBA with K neighbours (default 1)")
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default=DEFAULT_BACKBONE, help="for the IM rows")
    parser.add_argument("--size", type=int, default=None,
                        help="short side for the IM rows (448), long side for SIFT (640)")
    parser.add_argument("--device", default="cpu", help="torch device for IM, trained rows and training")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads for the bundle rows")
    parser.add_argument("--workers", type=int, default=2, help="processes for SIFT extraction")
    parser.add_argument("--unknown", type=Path, metavar="DIR",
                        help="photos of artworks the museum does not hold (images directly inside DIR): each row's "
                             "share of them, of queries and of distractors accepted at its shipped threshold "
                             "(a bundle row: the manifest's; the others: calibrated as export does)")
    parser.add_argument("--target-far", type=float, default=DEFAULT_TARGET_FAR,
                        help="target false-accept rate of the calibrated thresholds (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true")


def _check_args(args: argparse.Namespace) -> None:
    if args.qe < 1 or args.dba < 1:
        raise ValueError("--qe and --dba are numbers of neighbours, at least 1 (leave the variant out to turn one off)")
    for name, run in args.runs.items():
        if not (run / "model.pt").exists() or not (run / "config.yaml").exists():
            raise CheckpointError(f"--runs {name}={run}: not a finished training run (model.pt or config.yaml missing)")
    clash = sorted(set(args.runs) & set(args.train_alternatives))
    if clash:
        raise ValueError(f"{clash} given both in --runs and in --train-alternatives")
    if (args.train_config or args.train_set) and not args.train_alternatives:
        raise ValueError("--train-config / --train-set configure --train-alternatives, which is not given")
    if args.bundle is not None and not args.bundle.exists():
        raise BundleError(f"--bundle {args.bundle} does not exist")
    if args.unknown is not None:
        unknown_images(args.unknown)  # a missing or empty folder fails before any work
    if not 0.0 <= args.target_far < 1.0:
        raise ValueError(f"--target-far must be in [0, 1), got {args.target_far}")


def _training_base(args: argparse.Namespace) -> tuple[TrainConfig, str]:
    overrides = config_overrides(args.train_set or ())
    if args.train_config is not None:
        return load_config(args.train_config, overrides), str(args.train_config)
    if PROPOSED in args.runs:
        path = args.runs[PROPOSED] / "config.yaml"
        return load_config(path, overrides), str(path)
    return load_config(None, overrides), "defaults"


def measure(args: argparse.Namespace, dataset: MuseumDataset) -> dict[str, Any]:
    progress = not args.no_progress
    payload: dict[str, Any] = {"alternatives": [], "bundle": {}}
    groups: list[tuple[str, Callable[[], list[Row]]]] = []
    groups += [("baseline", g) for g in baseline_rows(args.methods, backbone=args.backbone, size=args.size,
                                                       device=args.device, workers=args.workers)]
    runs = dict(args.runs)
    if args.train_alternatives:
        base, source = _training_base(args)
        payload["training_config"] = source
        share_from = [runs[PROPOSED]] if PROPOSED in runs else []
        for loss in args.train_alternatives:
            alt = ensure_alternative(args.data, args.out / "runs", loss, alternative_config(loss, base),
                                     device=args.device, progress=progress, share_from=share_from)
            payload["alternatives"].append(alt)
            runs[loss] = Path(alt["run"])
            share_from.append(runs[loss])
    for name, run in sorted(runs.items(), key=lambda kv: kv[0] != PROPOSED):
        groups.append((name, trained_rows(name, run, device=args.device,
                                          group="trained" if name == PROPOSED else "alternative")))
    default = None
    if args.bundle is not None:
        variants, default, metrics, skipped = bundle_variants(args.bundle, args.bundle_backend)
        payload["bundle"] = {"path": str(args.bundle), "default_variant": default, "variants": variants,
                             "export_metrics": metrics, "skipped": skipped}
        manifest_threshold = bundle_threshold(args.bundle) if args.unknown is not None else None
        groups += [("bundle", bundle_row(args.bundle, v, backend=args.bundle_backend, threads=args.threads,
                                         threshold=manifest_threshold))
                   for v in variants]

    unknown = None if args.unknown is None else unknown_images(args.unknown)
    rows: list[dict[str, Any]] = []
    for _, build in groups:
        for row in build():
            started = time.perf_counter()
            results: dict[str, dict[str, Any] | None] = {}
            shipped = None
            for variant in args.variants:
                options = variant_options(variant, qe=args.qe, dba=args.dba, clustering=variant == args.variants[0],
                                          shipped_far=args.target_far)
                if row.method.kind == "pairwise" and (options.qe or options.dba):
                    results[variant] = None  # SIFT has no descriptors to expand or augment
                    continue
                # The shipped threshold does not depend on the variant (the runtime does no QE or DBA):
                # measured once per row, with its first measured variant.
                first = unknown is not None and shipped is None
                result: MethodResult = evaluate_method(dataset, row.method, options, progress=progress,
                                                       unknown=unknown if first else None, threshold=row.threshold)
                results[variant] = result.to_dict()
                shipped = results[variant].pop("shipped") or shipped
                print(f"{row.label} {variant}: mP@1 {100 * result.retrieval['mp_at_1']:.2f}  "
                      f"mAP {100 * result.retrieval['map']:.2f}", file=sys.stderr)
            entry = {"label": row.label, "group": row.group, "source": row.source, "info": row.method.info,
                     "results": results, "wall_s": round(time.perf_counter() - started, 2)}
            if shipped is not None:
                entry["shipped"] = shipped
            if row.group == "bundle":
                entry["default_variant"] = row.source["variant"] == default
            if "run" in row.source:
                entry["training_seconds"] = training_seconds(Path(row.source["run"]))
            rows.append(entry)
    payload["rows"] = rows
    if args.bundle is not None and not args.no_served:  # the product's own modes, as a phone meets them
        from muselens.benchmarks.through_service import served_modes

        print("serving the bundle: every photo on unary calls (verified, descriptor only) and on a stream",
              file=sys.stderr)
        payload["served"] = served_modes(args.bundle, args.data, args.unknown, log=args.out / "serve.log")
    return payload


def main(args: argparse.Namespace) -> int:
    try:
        _check_args(args)
        dataset = MuseumDataset.load(args.data)
        if not dataset.queries:
            raise DatasetError(f"{args.data} has no queries to evaluate: add queries/<instance_id>/*.jpg")
        payload = measure(args, dataset)
    except (ValueError, DatasetError, CheckpointError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = {"references": len(dataset.references), "artworks": len({r.instance_id for r in dataset.references}),
              "queries": len(dataset.queries), "distractors": len(dataset.distractors)}
    payload = {"dataset": str(args.data), "counts": counts, "variants": list(args.variants),
               "options": {"qe": args.qe, "dba": args.dba, "backbone": args.backbone, "size": args.size,
                           "device": args.device, "methods": list(args.methods),
                           "unknown": None if args.unknown is None else str(args.unknown),
                           "target_far": args.target_far}, **payload}
    payload["comparison"] = comparison(payload["rows"], payload["variants"])
    path = common.write_bench(args.out, "accuracy", getattr(args, "argv", None), payload)
    plot(args.out / PLOT, payload)
    print(text_table(payload))
    if shipped_table(payload):
        print("\n" + shipped_table(payload))
    if payload.get("served"):
        print("\n" + served_table(payload["served"]))
    print("\n" + comparison_line(payload["comparison"]).replace("**", ""))
    print(f"\nwrote {path} and {args.out / PLOT}")
    return 0

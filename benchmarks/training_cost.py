"""``muselens bench training RUN[,RUN...]``: the thesis' Tables 5.1 and 5.2.

Table 5.1 (training cost) is read from what each run recorded: per stage the wall time and the
peak resident memory of the training process (and CUDA's max allocated on a GPU), from
``history.json``; nothing is re-trained. Table 5.2 (test cost) is measured here: N images of the
museum described one at a time, after a warm-up, by the PyTorch model of each run
(:class:`~muselens.training.trained.TrainedModel`, its FT and proposed descriptors) and, with
``--bundle``, by every ONNX variant through the torch-free runtime; per image ms p50/p95 and the
resident memory the describing adds on top of the loaded model.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from muselens.benchmarks import common
from muselens.runtime.bundle import BundleError, load_bundle
from muselens.runtime.bundle.manifest import is_engine_variant
from muselens.core.data.images import SkippedImages, read_images
from muselens.core.data.museum_dataset import DatasetError, MuseumDataset
from muselens.runtime.engine.backends import BACKENDS, DEFAULT_BACKEND
from muselens.training.checkpoint import CheckpointError
from muselens.training.train_config import load_config
from muselens.training.peak_memory import peaks, reset_peaks

STAGE_NAMES = {1: "classification fine-tuning (3.1)", 2: "FCN fine-tuning (3.4.1)",
               3: "region descriptor (3.4.2)"}
TOTALS = (("stages 1-2 (FT)", (1, 2)), ("stages 1-3 (proposed)", (1, 2, 3)))
PLOT = "training_cost.png"


# -- Table 5.1: what the runs recorded ------------------------------------------------------------

def parse_runs(text: str) -> list[Path]:
    runs = [Path(v.strip()) for v in text.split(",") if v.strip()]
    if not runs:
        raise argparse.ArgumentTypeError("give at least one training run folder")
    return runs


def _finished(run: Path) -> None:
    for name in ("history.json", "config.yaml", "model.pt", "model.json"):
        if not (run / name).exists():
            raise CheckpointError(f"{run} is not a finished training run: {name} is missing")


def training_cost(run: Path) -> dict[str, Any]:
    """One run's Table 5.1 rows: per stage epochs, seconds, peak RSS / CUDA memory, last validation."""
    _finished(run)
    history = json.loads((run / "history.json").read_text())
    config = load_config(run / "config.yaml")
    stages = []
    for key, info in sorted(history.get("stages", {}).items(), key=lambda kv: int(kv[0])):
        stage = int(key)
        epochs = [h for h in history.get("history", []) if h.get("stage") == stage]
        last = epochs[-1] if epochs else {}
        stages.append({
            "stage": stage,
            "what": STAGE_NAMES.get(stage, f"stage {stage}") + (f", loss {config.stage3.loss}" if stage == 3 else ""),
            "epochs": len(epochs),
            "images_per_epoch": last.get("images"),
            "seconds": float(info["seconds"]),
            "peak_rss_mib": info.get("peak_rss_mib"),
            "rss_window": info.get("rss_window"),
            "cuda_max_allocated_mib": info.get("cuda_max_allocated_mib"),
            "val_mp_at_1": last.get("val_mp_at_1"),
            "val_map": last.get("val_map"),
        })
    totals = []
    for label, wanted in TOTALS:
        chosen = [s for s in stages if s["stage"] in wanted]
        if {s["stage"] for s in chosen} != set(wanted):
            continue
        totals.append({"label": label, "seconds": round(sum(s["seconds"] for s in chosen), 2),
                       "peak_rss_mib": _max(s["peak_rss_mib"] for s in chosen),
                       "cuda_max_allocated_mib": _max(s["cuda_max_allocated_mib"] for s in chosen)})
    # The stage clocks leave out data loading and the frozen-trunk cache; the run's files bracket
    # everything (config.yaml is written first, history.json last) unless the run was resumed.
    span = (run / "history.json").stat().st_mtime - (run / "config.yaml").stat().st_mtime
    return {"name": run.name, "path": str(run), "device": history.get("device"), "backbone": config.backbone,
            "loss": config.stage3.loss, "stages": stages, "totals": totals, "file_span_s": round(span, 1)}


def _max(values) -> float | None:
    present = [float(v) for v in values if v is not None]
    return max(present) if present else None


# -- Table 5.2: per-image test cost ---------------------------------------------------------------

def load_test_images(data: Path, n: int) -> tuple[list[np.ndarray], list[str]]:
    """The first ``n`` readable images: queries first (what a visitor sends), then distractors, then references."""
    museum = MuseumDataset.load(data)
    records = [*museum.queries, *museum.distractors, *museum.references]
    images, paths = [], []
    for record, image in read_images(records, lambda r: r.path, SkippedImages()):
        images.append(image)
        paths.append(str(record.path))
        if len(images) == n:
            break
    if not images:
        raise DatasetError(f"{data} has no readable images to describe")
    return images, paths


def time_per_image(describe: Callable[[np.ndarray], Any], images: Sequence[np.ndarray], *, warmup: int,
                   device: torch.device) -> dict[str, Any]:
    """ms per image (one at a time, after ``warmup`` images) and the peak RSS the describing adds."""
    for image in images[:warmup]:
        describe(image)
    gc.collect()
    before = common.rss_mb()
    window = reset_peaks(device)
    ms = []
    for image in images:
        started = time.perf_counter()
        describe(image)
        ms.append(1000 * (time.perf_counter() - started))
    peak = peaks(device, window)
    out = {"ms": common.percentiles(ms), "rss_mib": round(before, 1),
           "peak_rss_delta_mib": round(float(peak["peak_rss_mib"]) - before, 1), "rss_window": peak["rss_window"]}
    if "cuda_max_allocated_mib" in peak:
        out["cuda_max_allocated_mib"] = peak["cuda_max_allocated_mib"]
    return out


def _loaded(load: Callable[[], Any]) -> tuple[Any, float]:
    gc.collect()
    before = common.rss_mb()
    thing = load()
    return thing, round(common.rss_mb() - before, 1)


def pytorch_rows(run: Path, images: Sequence[np.ndarray], *, device: str, warmup: int) -> list[dict[str, Any]]:
    """The run's FT and (when stage 3 ran) proposed descriptors through PyTorch."""
    from muselens.training.trained import TrainedModel

    model, load_mib = _loaded(lambda: TrainedModel(run, device=device))
    rows = []
    for kind, label in (("ft", "FT"), ("proposed", "proposed")):
        if kind == "proposed" and 3 not in model.config.stages:
            continue
        measured = time_per_image(lambda image, kind=kind: model.describe([image], kind), images, warmup=warmup,
                                  device=model.device)
        rows.append({"label": f"PyTorch {label} ({run.name})", "engine": "pytorch", "run": str(run), "kind": kind,
                     "device": str(model.device), "short_side": model.short_side, "load_rss_mib": load_mib,
                     "torch_threads": torch.get_num_threads(), **measured})
    return rows


def onnx_row(bundle: Path, variant: str, default: str, images: Sequence[np.ndarray], *, backend: str,
             threads: int | None, warmup: int) -> dict[str, Any]:
    """One bundle variant through the runtime's Describer (the service's resize and graph)."""
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig

    served, load_mib = _loaded(lambda: ServedModel.load(bundle, ServingConfig(backend=backend, variant=variant,
                                                                              threads=threads)))
    try:
        measured = time_per_image(served.describer.describe, images, warmup=warmup, device=torch.device("cpu"))
        return {"label": f"ONNX {variant}" + (" (default)" if variant == default else ""), "engine": "onnx",
                "bundle": str(bundle), "variant": variant, "backend": served.describer.backend.describe(),
                "short_side": served.describer.short_side, "load_rss_mib": load_mib, **measured}
    finally:
        served.close()


def measure_model(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 5.2 rows of one model, described by a plain dict so a fresh process can run it:
    ``{"engine": "pytorch", "run", "device"}`` or ``{"engine": "onnx", "bundle", "variant",
    "default", "backend"}``, plus ``data``, ``images``, ``warmup``, ``threads``."""
    if spec.get("threads") is not None:
        torch.set_num_threads(int(spec["threads"]))
    images, _ = load_test_images(Path(spec["data"]), int(spec["images"]))
    if spec["engine"] == "pytorch":
        return pytorch_rows(Path(spec["run"]), images, device=spec["device"], warmup=int(spec["warmup"]))
    if spec["engine"] == "onnx":
        return [onnx_row(Path(spec["bundle"]), spec["variant"], spec["default"], images, backend=spec["backend"],
                         threads=spec.get("threads"), warmup=int(spec["warmup"]))]
    raise ValueError(f"unknown engine {spec['engine']!r}: 'pytorch' or 'onnx'")


def run_isolated(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """:func:`measure_model` in a fresh process, so one model's memory does not hide in another's
    freed pages and each load is counted from a clean start."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure_model, spec).result()


def bundle_variants(bundle: Path, backend: str) -> tuple[list[str], str, list[str]]:
    """(variants to time, the default one, those skipped and why)."""
    with load_bundle(bundle) as loaded:
        variants = sorted(loaded.manifest.models)
        default = loaded.manifest.default_variant
    chosen, skipped = [], []
    for variant in variants:
        if is_engine_variant(variant) and backend != "tensorrt":
            skipped.append(f"{variant} (a TensorRT engine; pass --bundle-backend tensorrt on its GPU)")
        else:
            chosen.append(variant)
    return chosen, default, skipped


# -- results --------------------------------------------------------------------------------------

def _num(value: float | None, fmt: str = "{:.0f}") -> str:
    if value is None:
        return "–"
    text = fmt.format(value)
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0"


def table_51(data: dict[str, Any]) -> list[str]:
    lines = ["| run | stage | what | epochs | seconds | peak RSS MiB | CUDA max MiB | val mP@1 |",
             "|---|---|---|---|---|---|---|---|"]
    for run in data["runs"]:
        for s in run["stages"]:
            lines.append(f"| {run['name']} | {s['stage']} | {s['what']} | {s['epochs']} | {s['seconds']:.1f} | "
                         f"{_num(s['peak_rss_mib'])} | {_num(s['cuda_max_allocated_mib'])} | "
                         f"{_num(None if s['val_mp_at_1'] is None else 100 * s['val_mp_at_1'], '{:.2f}')} |")
        for t in run["totals"]:
            lines.append(f"| {run['name']} | **{t['label']}** | | | **{t['seconds']:.1f}** | "
                         f"**{_num(t['peak_rss_mib'])}** | {_num(t['cuda_max_allocated_mib'])} | |")
    return lines


def table_52(data: dict[str, Any]) -> list[str]:
    lines = ["| model | backend | ms/img p50 | p95 | mean | load RSS MiB | peak RSS Δ MiB | CUDA max MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in data["test"]["rows"]:
        ms = r["ms"]
        backend = r.get("backend") or f"torch {r['device']} x{r.get('torch_threads')}"
        lines.append(f"| {r['label']} | {backend} | {ms['p50']:.1f} | {ms['p95']:.1f} | {ms['mean']:.1f} | "
                     f"{_num(r['load_rss_mib'])} | {_num(r['peak_rss_delta_mib'])} | "
                     f"{_num(r.get('cuda_max_allocated_mib'))} |")
    return lines


def notes(data: dict[str, Any]) -> list[str]:
    t = data["test"]
    out = ["The ImageNet (IM) baselines are used as downloaded: no training cost, as in the thesis.",
           "Stage seconds are the stage's own clock (epochs and validation); data loading and the frozen-trunk "
           "feature cache come before stage 1 and are in no stage. From config.yaml to history.json the runs took "
           + ", ".join(f"{r['name']} {r['file_span_s']:.0f} s" for r in data["runs"])
           + " (file times; meaningless for a resumed run)."]
    out.append(f"Test: {len(t['paths'])} images of `{t['data']}` (queries first), one at a time after "
               f"{t['warmup']} warm-up images, resize included. Load RSS: resident memory added by loading the "
               "model; peak RSS Δ: the peak while describing above the loaded model's RSS; "
               + ("each model in a fresh process." if t.get("isolated") else
                  "all models in one process (--in-process), so later loads reuse earlier models' freed memory."))
    out += [f"Bundle variant not measured: {s}." for s in t.get("skipped", [])]
    return out


def markdown(folder: Path, data: dict) -> str:
    lines = [f"## {folder.name}", "", f"`{data['command']}`", "", common.machine_line(data["environment"]) + ".", "",
             "Training cost (Table 5.1), read from each run's history.json:", "", *table_51(data), "",
             "Test cost per image (Table 5.2):", "", *table_52(data), "", *(f"- {n}" for n in notes(data)), ""]
    if (folder / PLOT).exists():
        lines += [f"![{folder.name}](results/{folder.name}/{PLOT})", ""]
    return "\n".join(lines)


def text_tables(data: dict[str, Any]) -> str:
    strip = lambda lines: "\n".join(line.replace("**", "") for line in lines)  # noqa: E731
    return "Table 5.1 - training cost\n" + strip(table_51(data)) + "\n\nTable 5.2 - test cost per image\n" \
        + strip(table_52(data))


def plot(path: Path, data: dict[str, Any]) -> None:
    """Stage seconds (stacked) and peak RSS per run; per-image ms p50 with p95 per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, rows = data["runs"], data["test"]["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    x = np.arange(len(runs))
    bottom = np.zeros(len(runs))
    width = 0.8 / 3
    for stage in (1, 2, 3):
        secs = np.array([next((s["seconds"] for s in r["stages"] if s["stage"] == stage), 0.0) for r in runs])
        axes[0].bar(x, secs, 0.6, bottom=bottom, label=f"stage {stage}")
        bottom += secs
        rss = [next((s["peak_rss_mib"] or 0.0 for s in r["stages"] if s["stage"] == stage), 0.0) for r in runs]
        axes[1].bar(x + (stage - 2) * width, rss, width, label=f"stage {stage}")
    for ax, title, unit in ((axes[0], "training time per stage", "s"), (axes[1], "peak RSS per stage", "MiB")):
        ax.set_xticks(x, [r["name"] for r in runs], rotation=20, ha="right", fontsize=8)
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.legend(fontsize=8)
    y = np.arange(len(rows))
    p50 = np.array([r["ms"]["p50"] for r in rows])
    p95 = np.array([r["ms"]["p95"] for r in rows])
    axes[2].barh(y, p50, 0.6, xerr=[np.zeros_like(p50), p95 - p50], capsize=3)
    axes[2].set_yticks(y, [r["label"] for r in rows], fontsize=8)
    axes[2].invert_yaxis()
    axes[2].set_xlabel("ms per image (bar p50, whisker p95)")
    axes[2].set_title("test time per image")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the command ----------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", type=parse_runs, metavar="RUN[,RUN...]", help="finished training run folders")
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json and training_cost.png")
    parser.add_argument("--data", type=Path, help="museum whose images are described (default: the first run's)")
    parser.add_argument("--images", type=int, default=30, metavar="N", help="images described per model (30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed images first (3)")
    parser.add_argument("--bundle", type=Path, help="exported bundle: time each ONNX variant through the runtime")
    parser.add_argument("--bundle-backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    parser.add_argument("--device", default="cpu", help="torch device for the PyTorch rows")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and ONNX Runtime threads (default: each library's own)")
    parser.add_argument("--in-process", action="store_true",
                        help="measure every model in this process (faster; memory deltas then share one heap)")


def _data_folder(args: argparse.Namespace) -> Path:
    if args.data is not None:
        return args.data
    recorded = json.loads((args.runs[0] / "model.json").read_text()).get("data")
    if not recorded or not Path(recorded).exists():
        raise DatasetError(f"{args.runs[0]}/model.json names no existing dataset ({recorded!r}): pass --data")
    return Path(recorded)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    if args.images < 1 or args.warmup < 0:
        raise ValueError("--images must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        raise ValueError("--threads must be >= 1")
    if args.bundle is not None and not args.bundle.exists():
        raise BundleError(f"--bundle {args.bundle} does not exist")
    runs = [training_cost(run) for run in args.runs]
    data = _data_folder(args)
    images, paths = load_test_images(data, args.images)
    common_spec = {"data": str(data), "images": args.images, "warmup": args.warmup, "threads": args.threads}
    specs = [{**common_spec, "engine": "pytorch", "run": str(run), "device": args.device} for run in args.runs]
    skipped: list[str] = []
    if args.bundle is not None:
        variants, default, skipped = bundle_variants(args.bundle, args.bundle_backend)
        specs += [{**common_spec, "engine": "onnx", "bundle": str(args.bundle), "variant": v, "default": default,
                   "backend": args.bundle_backend} for v in variants]
    rows = []
    for spec in specs:
        print(f"describing {len(images)} images with {spec.get('run') or spec['variant']} ({spec['engine']})"
              + (" in this process" if args.in_process else " in a fresh process"), file=sys.stderr)
        if args.in_process:
            threads_before = torch.get_num_threads()
            try:
                rows += measure_model(spec)
            finally:
                torch.set_num_threads(threads_before)
        else:
            rows += run_isolated(spec)
    shapes = sorted({f"{im.shape[1]}x{im.shape[0]}" for im in images})
    return {"runs": runs, "test": {"data": str(data), "paths": paths, "image_sizes": shapes[:10], "warmup": args.warmup,
                                   "threads": args.threads, "isolated": not args.in_process, "rows": rows,
                                   "skipped": skipped}}


def main(args: argparse.Namespace) -> int:
    try:
        payload = measure(args)
    except (ValueError, DatasetError, CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = common.write_bench(args.out, "training", getattr(args, "argv", None), payload)
    plot(args.out / PLOT, payload)
    print(text_tables(payload))
    print(f"\nwrote {path} and {args.out / PLOT}")
    return 0

"""``muselens bench real-photos``: every real photo set, each method, the product through its service.

For every set in ``../shared/datasets/`` (``mcv-paintings``, ``ukbench-250``, ``grocery-packaged``)
this measures, in one run:

* the baselines SIFT, IM-GeM and IM-R-MAC with ``muselens evaluate``'s protocol, their open-set
  figures at the threshold a bundle of that method would ship;
* the proposed method retrained with a named schedule (``short``: the CPU schedule), exported,
  served by ``muselens serve`` and sent every query, distractor and unknown photo over gRPC, on
  unary calls and on one stream, as a phone would (:mod:`muselens.benchmarks.through_service`).

Columns: mP@1, mAP, and at the shipped threshold the correct-accept rate and the false-accept
rates of the set's distractors and of the unknown photos (``<set>-unknown/`` beside the set).
``--artworks N`` keeps the first N artworks that have queries (symlinks, nothing copied): what
CI runs. The sets stay in shared/; they are never copied into the repository.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from muselens.benchmarks import common
from muselens.benchmarks.served_table import percent

SETS = ("mcv-paintings", "ukbench-250", "grocery-packaged")
BASELINES = ("sift", "im-gem", "im-rmac")
LABELS = {"sift": "SIFT + RANSAC", "im-gem": "IM-GeM", "im-rmac": "IM-R-MAC"}
UNKNOWN_SUFFIX = "-unknown"


def default_datasets() -> Path:
    """``../shared/datasets`` beside the repository."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def subset_museum(source: Path, out: Path, artworks: int, distractors: int | None = None) -> Path:
    """A museum of the first ``artworks`` artworks of ``source`` that have queries, as symlinks."""
    if artworks < 2:
        raise ValueError(f"a subset needs at least 2 artworks, got {artworks}")
    with_queries = sorted(d.name for d in (source / "queries").iterdir() if d.is_dir() and common.images_in(d)
                          and common.images_in(source / "references" / d.name))
    keep = with_queries[:artworks]
    if len(keep) < 2:
        raise ValueError(f"{source} has fewer than 2 artworks with both references and queries")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    for split in ("references", "queries"):
        for name in keep:
            folder = out / split / name
            folder.mkdir(parents=True)
            for image in common.images_in(source / split / name):
                (folder / image.name).symlink_to(image.resolve())
    kept_distractors = common.images_in(source / "distractors")[:distractors]
    if kept_distractors:
        (out / "distractors").mkdir(parents=True)
        for image in kept_distractors:
            (out / "distractors" / image.name).symlink_to(image.resolve())
    if (source / "instances.csv").exists():
        with open(source / "instances.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        with open(out / "instances.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if r and r[0] in set(keep)])
    return out


def baseline_row(museum: Path, method: str, unknown: Path | None, *, size: int | None,
                 progress: bool) -> dict[str, Any]:
    from muselens.core.data.museum_dataset import MuseumDataset
    from muselens.training.evaluation.methods import build_method
    from muselens.training.evaluation.protocol import EvalOptions, evaluate_method, unknown_images

    dataset = MuseumDataset.load(museum)
    started = time.perf_counter()
    result = evaluate_method(dataset, build_method(method, size=size, workers=2), EvalOptions(clustering=False),
                             progress=progress, unknown=unknown_images(unknown) if unknown is not None else [])
    data = result.to_dict()
    shipped = data.get("shipped") or {}
    return {"label": LABELS[method], "method": method, "mp_at_1": data["retrieval"]["mp_at_1"],
            "map": data["retrieval"]["map"], "correct_accept_rate": shipped.get("correct_accept_rate"),
            "distractor_false_accept_rate": shipped.get("distractor_far"),
            "unknown_false_accept_rate": shipped.get("unknown_far"),
            "threshold": {k: shipped.get(k) for k in ("threshold", "how")},
            "wall_s": round(time.perf_counter() - started, 1)}


def service_rows(bundle: Path, museum: Path, unknown: Path | None, label: str, log: Path,
                 threshold: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per service mode (:data:`~muselens.benchmarks.through_service.MODES`) of ``bundle``
    serving every photo of ``museum``."""
    from muselens.benchmarks.through_service import served_modes

    served = served_modes(bundle, museum, unknown, log=log)
    rows = [{**{k: v for k, v in row.items() if k not in ("mode", "label")},
             "label": f"{label}, {row['label']})", "method": f"proposed-{row['mode'].replace('_', '-')}",
             "threshold": threshold or served["threshold"]} for row in served["rows"]]
    return rows, served["service"]


def _recorded_training_seconds(run: Path) -> float:
    """A finished run found in the output folder is measured again, not retrained: its time is the
    stages' seconds its history recorded when it was trained."""
    stages = json.loads((run / "history.json").read_text()).get("stages", {})
    return float(sum(stage.get("seconds", 0.0) for stage in stages.values()))


def proposed_rows(museum: Path, work: Path, unknown: Path | None, *, schedule: str, seed: int,
                  overrides: dict[str, Any], progress: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Retrain, export (fp32), serve and measure through gRPC; one row per service mode."""
    from muselens.export.bundle import ExportOptions, export_bundle
    from muselens.training.run import TrainingRun
    from muselens.training.schedules import schedule_config

    run, bundle = work / f"run-seed{seed}", work / f"bundle-seed{seed}"
    config = schedule_config(schedule, {**overrides, "seed": seed})
    started = time.perf_counter()
    reused = (run / "model.pt").exists()
    if not reused:
        TrainingRun(museum, run, config, resume=(run / "checkpoint.pt").exists(), progress=progress).run()
    train_s = _recorded_training_seconds(run) if reused else time.perf_counter() - started
    started = time.perf_counter()
    if bundle.exists():
        import shutil

        shutil.rmtree(bundle)
    exported = export_bundle(run, bundle, data=museum, options=ExportOptions(precisions=("fp32",), latency_runs=0))
    export_s = time.perf_counter() - started
    rows, measured = service_rows(bundle, museum, unknown, f"proposed ({schedule}, served", work / "serve.log",
                                  exported.threshold.to_dict())
    info = {"run": str(run), "bundle": str(bundle), "seed": seed, "schedule": schedule, "train_s": round(train_s, 1),
            "reused_run": reused,
            "export_s": round(export_s, 1), "service": measured}
    return rows, info


def measure_set(name: str, source: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from muselens.core.data.museum_dataset import MuseumDataset

    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    museum = source if args.artworks is None else subset_museum(source, work / "museum", args.artworks,
                                                                distractors=args.artworks)
    unknown = source.parent / f"{name}{UNKNOWN_SUFFIX}"
    unknown = unknown if unknown.is_dir() else None
    dataset = MuseumDataset.load(museum)
    counts = {"artworks": len({r.instance_id for r in dataset.references}), "references": len(dataset.references),
              "queries": len(dataset.queries), "distractors": len(dataset.distractors),
              "unknowns": len(common.images_in(unknown)) if unknown else 0}
    print(f"[{name}] {counts}", file=sys.stderr, flush=True)
    rows = []
    for method in args.methods:
        print(f"[{name}] {LABELS[method]}", file=sys.stderr, flush=True)
        rows.append(baseline_row(museum, method, unknown, size=args.size, progress=not args.no_progress))
    runs = []
    bundle = dict(getattr(args, "bundles", None) or []).get(name)
    if bundle is not None:  # a bundle already exported: measured as it is, nothing retrained
        print(f"[{name}] bundle {bundle}: serve", file=sys.stderr, flush=True)
        bundle_rows, measured = service_rows(bundle, museum, unknown, f"bundle {bundle.name} (served",
                                             work / "serve.log")
        rows += bundle_rows
        runs.append({"bundle": str(bundle), "service": measured})
    elif args.schedule != "none":
        overrides = {}
        for seed in args.seeds:
            print(f"[{name}] proposed, {args.schedule} schedule, seed {seed}: retrain, export, serve",
                  file=sys.stderr, flush=True)
            seed_rows, info = proposed_rows(museum, work, unknown, schedule=args.schedule, seed=seed,
                                            overrides=overrides, progress=not args.no_progress)
            rows += [{**r, "seed": seed} for r in seed_rows]
            runs.append(info)
    return {"set": name, "source": str(source), "counts": counts, "rows": rows, "runs": runs}


def table(payload: dict[str, Any]) -> str:
    lines = ["| set | method | mP@1 | mAP | correct accept | distractors accepted | unknowns accepted | "
             "verified right / wrong | p50 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in payload["sets"]:
        for r in s["rows"]:
            latency = f"{r['client_ms_p50']:.0f}" if r.get("client_ms_p50") is not None else "–"
            verified = (f"{percent(r['verified_right'])} / {percent(r['verified_wrong'])}"
                        if r.get("verified_right") is not None and r["method"] == "proposed-unary" else "–")
            lines.append(f"| {s['set']} | {r['label']} | {percent(r['mp_at_1'])} | {percent(r['map'])} | "
                         f"{percent(r['correct_accept_rate'])} | {percent(r['distractor_false_accept_rate'])} | "
                         f"{percent(r['unknown_false_accept_rate'])} | {verified} | {latency} |")
    return "\n".join(lines)


SEED_METRICS = (("mp_at_1", "mP@1"), ("map", "mAP"), ("correct_accept_rate", "correct accept"))


def seed_table(payload: dict[str, Any]) -> str:
    """Mean ± standard deviation over the seeds of every served mode trained with several seeds
    (empty when no mode has two): one run proves nothing where runs spread by points."""
    lines = []
    for s in payload["sets"]:
        by_label: dict[str, list[dict[str, Any]]] = {}
        for r in s["rows"]:
            if "seed" in r:
                by_label.setdefault(r["label"], []).append(r)
        for label, rows in by_label.items():
            if len(rows) < 2:
                continue
            cells = []
            for key, _ in SEED_METRICS:
                values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=float) * 100
                cells.append(f"{values.mean():.1f} ± {values.std(ddof=1):.1f}" if values.size > 1 else "–")
            lines.append(f"| {s['set']} | {label} | {len(rows)} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    return "\n".join(["| set | method | seeds | " + " | ".join(name for _, name in SEED_METRICS) + " |",
                      "|---|---|---|" + "---|" * len(SEED_METRICS)] + lines)


def verdicts(payload: dict[str, Any]) -> str:
    """Per set, each served mode with several seeds against the better of IM-GeM and IM-R-MAC on
    mP@1: the margin of its mean, its spread (standard deviation), and whether the margin is
    larger than the spread (issue 20's test of a descriptor worth training for)."""
    lines = []
    for s in payload["sets"]:
        ims = [r for r in s["rows"] if r.get("method") in ("im-gem", "im-rmac") and r.get("mp_at_1") is not None]
        if not ims:
            continue
        best = max(ims, key=lambda r: r["mp_at_1"])
        by_label: dict[str, list[float]] = {}
        for r in s["rows"]:
            if "seed" in r and r.get("mp_at_1") is not None:
                by_label.setdefault(r["label"], []).append(100 * r["mp_at_1"])
        for label, values in by_label.items():
            if len(values) < 2:
                continue
            mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
            margin = mean - 100 * best["mp_at_1"]
            lines.append(f"| {s['set']} | {label} | {mean:.1f} ± {sd:.1f} | {best['label']} {100 * best['mp_at_1']:.1f} "
                         f"| {margin:+.1f} | {'yes' if margin > sd else '**no**'} |")
    if not lines:
        return ""
    return "\n".join(["| set | method | mP@1 over the seeds | better IM baseline | margin | above by more than "
                      "the spread |", "|---|---|---|---|---|---|"] + lines)


def markdown(folder: Path, data: dict[str, Any]) -> str:
    lines = [f"## {folder.name}", "", f"`{data['command']}`", "", common.machine_line(data["environment"]), "",
             "Percentages. mAP of the served rows ranks artworks (the instance-averaged gallery the service "
             "searches, truncated at its top-k); the baselines' ranks reference photos. Accept and reject "
             "are at the shipped threshold.", "", table(data), ""]
    seeds = seed_table(data)
    if seeds:
        lines += ["Over the seeds (mean ± standard deviation of the seeds' runs):", "", seeds, ""]
    above = verdicts(data)
    if above:
        lines += ["Against the untrained network (the better of IM-GeM and IM-R-MAC on the same set):", "", above, ""]
    if not data.get("complete", True):
        lines += ["This run stopped before every set it was asked for was measured.", ""]
    for s in data["sets"]:
        lines.append(f"- {s['set']}: {s['counts']}" + "".join(
            f"; seed {r['seed']}: trained in {r['train_s']:.0f} s, exported in {r['export_s']:.0f} s"
            if "seed" in r else f"; bundle {r['bundle']}" for r in s["runs"]))
    return "\n".join(lines) + "\n"  # results_md.bench_section adds NOTES.md


def _list(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        names = [] if text == "none" else [t.strip() for t in text.split(",") if t.strip()]
        bad = [n for n in names if n not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)} or none")
        return names
    return parse


def _set_names(text: str) -> list[str]:
    """Comma-separated folder names inside ``--datasets`` (checked against it in main): the real
    sets, or any museum dataset beside them, such as a synthetic museum for Table 5.3."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if "/" in n or "\\" in n or n in (".", "..")]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{bad or text!r}: sets are folder names inside --datasets, not paths")
    return names


def _set_bundle(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected SET=BUNDLE with SET a folder name inside --datasets, got {text!r}")
    if not Path(path).exists():
        raise argparse.ArgumentTypeError(f"bundle {path} does not exist")
    return name, Path(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", type=Path, default=default_datasets(),
                        help="folder holding the real sets (default: ../shared/datasets)")
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json and the runs")
    parser.add_argument("--sets", type=_set_names, default=list(SETS),
                        help=f"folders of --datasets, comma-separated (default {','.join(SETS)}); a synthetic "
                             "museum beside them is measured the same way")
    parser.add_argument("--methods", type=_list(BASELINES), default=list(BASELINES),
                        help=f"baselines (default {','.join(BASELINES)}; none for none)")
    parser.add_argument("--schedule", default="cpu", choices=("cpu", "short", "tiny", "full", "none"),
                        help="training schedule of the proposed rows (default cpu: the paper's epochs at 320; "
                             "none: no proposed rows)")
    parser.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=[0])
    parser.add_argument("--artworks", type=int, default=None,
                        help="keep the first N artworks with queries of each set (CI's subset)")
    parser.add_argument("--size", type=int, default=None, help="short side of the IM rows (default 448)")
    parser.add_argument("--bundle", dest="bundles", type=_set_bundle, action="append", metavar="SET=BUNDLE",
                        help="measure this exported bundle on SET instead of retraining (repeatable)")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    missing = [s for s in args.sets if not (args.datasets / s).is_dir()]
    if missing:
        print(f"error: {args.datasets} lacks {', '.join(missing)} (the real sets live in ../shared/datasets)",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"datasets": str(args.datasets), "schedule": args.schedule, "seeds": args.seeds,
                               "artworks": args.artworks, "sets": [], "complete": False}
    for name in args.sets:  # bench.json after every set: a long run stopped midway keeps what it measured
        payload["sets"].append(measure_set(name, args.datasets / name, args.out, args))
        payload["complete"] = len(payload["sets"]) == len(args.sets)
        path = common.write_bench(args.out, "real-photos", getattr(args, "argv", None), payload)
    print(table(payload))
    if seed_table(payload):
        print("\n" + seed_table(payload))
    if verdicts(payload):
        print("\n" + verdicts(payload))
    print(f"\nwrote {path}")
    return 0

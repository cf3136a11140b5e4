"""``muselens bench training-speed``: stages 1-2 from pooled trunk features against fresh augmentation.

The same museum, schedule and seeds are trained twice in one process, once drawing stages 1 and
2 from the view pool (:mod:`muselens.training.view_pool`) and once augmenting afresh every epoch
(``view_pool`` 0/0); everything else (stage 3, validation, the channels-last layout) is the same
code. Per stage it reports the wall time, the part spent building the pool and validating, the
seconds per training epoch, and the validation mP@1 / mAP after the run, as mean ± standard
deviation over the seeds: a pool that saves time but loses accuracy shows both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from muselens.benchmarks import common

MODES = {"pooled": {}, "fresh": {"view_pool": {"stage1_views": 0, "stage2_views": 0}}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("museum", type=Path, help="museum dataset directory (with queries, for the accuracy)")
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json and the runs")
    parser.add_argument("--schedule", default="cpu", help="training schedule (default cpu: the paper's epochs at 320)")
    parser.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=[0, 1, 2])
    parser.add_argument("--modes", type=lambda t: [m for m in t.split(",") if m], default=list(MODES),
                        help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="one more training setting for every run (repeatable)")
    parser.add_argument("--no-progress", action="store_true")


def run_summary(summary: dict[str, Any], seconds: float) -> dict[str, Any]:
    """What one run's history says: per stage time, pool, validation, epochs; final accuracy."""
    stages = {}
    for stage, info in summary["stages"].items():
        epochs = [h for h in summary["history"] if str(h["stage"]) == stage]
        stages[stage] = {**info, "epochs": len(epochs),
                         "epoch_seconds": round(float(np.mean([h["seconds"] for h in epochs])), 2) if epochs else None}
    last = [h for h in summary["history"] if "val_mp_at_1" in h]
    return {"seconds": round(seconds, 1), "stages": stages,
            "mp_at_1": last[-1]["val_mp_at_1"] if last else None, "map": last[-1]["val_map"] if last else None}


def main(args: argparse.Namespace) -> int:
    from muselens.training.run import TrainingRun
    from muselens.training.schedules import SCHEDULES, schedule_config
    from muselens.training.train_config import ConfigError, config_overrides, parse_setting

    bad = [m for m in args.modes if m not in MODES]
    if bad or not args.modes:
        print(f"error: --modes must name some of {', '.join(MODES)}, got {args.modes}", file=sys.stderr)
        return 2
    if args.schedule not in SCHEDULES:
        print(f"error: unknown schedule {args.schedule!r}; choose from {', '.join(SCHEDULES)}", file=sys.stderr)
        return 2
    if not (args.museum / "queries").is_dir():
        print(f"error: {args.museum} has no queries/ folder: accuracy needs queries", file=sys.stderr)
        return 2
    try:
        extra = config_overrides([parse_setting(s) for s in args.settings])
        configs = {(mode, seed): schedule_config(args.schedule, _merged(extra, MODES[mode], {"seed": seed}))
                   for mode in args.modes for seed in args.seeds}
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    payload: dict[str, Any] = {"museum": str(args.museum), "schedule": args.schedule, "seeds": args.seeds,
                               "settings": args.settings, "runs": [], "complete": False}
    for (mode, seed), config in configs.items():
        out = args.out / f"{mode}-seed{seed}"
        print(f"[training-speed] {mode}, seed {seed} -> {out}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        summary = TrainingRun(args.museum, out, config, resume=(out / "checkpoint.pt").exists(),
                              progress=not args.no_progress).run()
        payload["runs"].append({"mode": mode, "seed": seed, **run_summary(summary, time.perf_counter() - started)})
        payload["complete"] = len(payload["runs"]) == len(configs)
        path = common.write_bench(args.out, "training-speed", getattr(args, "argv", None), payload)
    print(table(payload))
    print(f"\nwrote {path}")
    return 0


def _merged(*parts: dict[str, Any]) -> dict[str, Any]:
    from muselens.training.train_config import merge

    out: dict[str, Any] = {}
    for part in parts:
        out = merge(out, part)
    return out


def _spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def table(payload: dict[str, Any]) -> str:
    modes = list(dict.fromkeys(r["mode"] for r in payload["runs"]))
    stages = sorted({s for r in payload["runs"] for s in r["stages"]})
    lines = ["| mode | seeds | " + " | ".join(f"stage {s} s (pool; validation; s/epoch)" for s in stages)
             + " | total s | mP@1 | mAP |", "|---|---|" + "---|" * (len(stages) + 3)]
    by_mode = {m: [r for r in payload["runs"] if r["mode"] == m] for m in modes}
    for mode, runs in by_mode.items():
        cells = []
        for s in stages:
            infos = [r["stages"][s] for r in runs if s in r["stages"]]
            pool = [i.get("view_pool", {}).get("seconds") for i in infos]
            cells.append(f"{_spread([i['seconds'] for i in infos], digits=0)} "
                         f"({_spread([p for p in pool if p is not None], digits=0)}; "
                         f"{_spread([i['validation_seconds'] for i in infos], digits=0)}; "
                         f"{_spread([i['epoch_seconds'] for i in infos])})")
        lines.append(f"| {mode} | {len(runs)} | " + " | ".join(cells) + f" | {_spread([r['seconds'] for r in runs], digits=0)}"
                     f" | {_spread([r['mp_at_1'] for r in runs], 100)} | {_spread([r['map'] for r in runs], 100)} |")
    if {"pooled", "fresh"} <= set(by_mode):
        ratios = []
        for s in stages:
            pooled = [r["stages"][s]["seconds"] for r in by_mode["pooled"] if s in r["stages"]]
            fresh = [r["stages"][s]["seconds"] for r in by_mode["fresh"] if s in r["stages"]]
            if pooled and fresh:
                ratios.append(f"stage {s} {np.mean(fresh) / np.mean(pooled):.2f}x")
        total = np.mean([r["seconds"] for r in by_mode["fresh"]]) / np.mean([r["seconds"] for r in by_mode["pooled"]])
        lines += ["", f"Speed-up of the pooled run over fresh augmentation (mean wall time): {', '.join(ratios)}; "
                      f"the whole run {total:.2f}x."]
    return "\n".join(lines)


def markdown(folder: Path, data: dict[str, Any]) -> str:
    lines = [f"## {folder.name}", "", f"`{data['command']}`", "", common.machine_line(data["environment"]), "",
             f"Museum `{data['museum']}`, schedule `{data['schedule']}`, seeds {data['seeds']}. Stage seconds "
             "include building the view pool and validating; s/epoch is one epoch's training alone. mP@1 / mAP: "
             "the queries against the references after the run (percent, mean ± standard deviation over seeds).",
             "", table(data), ""]
    if not data.get("complete", True):
        lines += ["This run stopped before every run it was asked for was measured.", ""]
    return "\n".join(lines)  # results_md.bench_section adds NOTES.md

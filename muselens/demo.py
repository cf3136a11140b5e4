"""``muselens demo``: the README's main job, end to end on an embedded default museum.

Today it builds the seeded synthetic museum, checks it, and measures the ImageNet baselines on
it (the yardstick every trained model must beat). A re-run reuses the museum already built.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# The embedded default: small enough for 2 CPU cores, hard enough to leave room for training.
DEFAULT_MUSEUM = {"instances": 60, "references": 5, "queries": 2, "distractors": 60, "seed": 0}
DEFAULT_METHODS = ("sift", "im-gem")  # the best local-feature and the best CNN baseline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="where everything goes")
    parser.add_argument("--instances", type=int, default=DEFAULT_MUSEUM["instances"])
    parser.add_argument("--references", type=int, default=DEFAULT_MUSEUM["references"])
    parser.add_argument("--queries", type=int, default=DEFAULT_MUSEUM["queries"])
    parser.add_argument("--distractors", type=int, default=DEFAULT_MUSEUM["distractors"])
    parser.add_argument("--seed", type=int, default=DEFAULT_MUSEUM["seed"])
    parser.add_argument("--size", type=int, default=640, help="long side of the museum's photos")
    parser.add_argument("--eval-size", type=int, default=None, help="short side for the CNN (default 448)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help="baselines to measure (see muselens evaluate --help)")
    parser.add_argument("--no-progress", action="store_true")


def _step(n: int, total: int, text: str) -> None:
    print(f"\n[{n}/{total}] {text}", file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    from muselens.runtime.data.check import check_dataset, format_report
    from muselens.runtime.data.museum import MuseumDataset
    from muselens.runtime.data.synthetic import make_museum
    from muselens.training.evaluation.command import main as evaluate_main

    started = time.perf_counter()
    museum_dir = args.out / "museum"
    params = {"instances": args.instances, "references": args.references, "queries": args.queries,
              "distractors": args.distractors, "seed": args.seed, "size": args.size}
    _step(1, 3, f"synthetic museum -> {museum_dir}")
    if _same_museum(museum_dir, params):
        print("  already built with these settings: reused", file=sys.stderr)
    else:
        make_museum(museum_dir, **params, progress=not args.no_progress, overwrite=True)

    _step(2, 3, "checking the dataset")
    report = check_dataset(MuseumDataset.load(museum_dir), progress=not args.no_progress)
    print(format_report(report))
    if not report.usable:
        return 1

    _step(3, 3, f"baselines: {args.methods}")
    eval_args = argparse.Namespace(
        data=museum_dir, method=[m for m in args.methods.split(",") if m], backbone=None,
        size=args.eval_size, multiscale=False, instance_avg=False, qe=0, dba=0, no_clustering=False,
        device="cpu", workers=2, run=None, out=args.out / "evaluation", no_progress=args.no_progress,
        argv=getattr(args, "argv", ["demo"]),
    )
    code = evaluate_main(eval_args)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; results in {args.out}/",
          file=sys.stderr)
    return code


def _same_museum(museum_dir: Path, params: dict) -> bool:
    """True when ``museum_dir`` holds a museum generated with exactly these parameters."""
    manifest = museum_dir / "museum.json"
    if not manifest.exists():
        return False
    try:
        written = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False
    return all(written.get(k) == v for k, v in params.items())

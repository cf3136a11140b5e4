"""How fast ``make-museum`` writes photos: images per second over repeated runs.

    python -m muselens.benchmarks.make_museum_speed --out make_museum_speed.json

Each run writes a fresh museum (default 20 artworks x (5 references + 2 queries) + 20
distractors at 640 px) to a temporary folder; a smaller warm-up run goes first so that
imports and the file system cache do not count. The JSON records every run, the median and
the machine. Besides wall-clock images/s it records the CPU time per image (this process and
its workers), which stays meaningful on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from muselens.core.synthetic.museum import make_museum


def measure(*, instances: int, references: int, queries: int, distractors: int, size: int, workers: int | None,
            repeats: int, seed: int = 0) -> dict:
    """Run make_museum ``repeats`` times after a warm-up and summarise images per second."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="muselens-bench-") as tmp:
        make_museum(Path(tmp) / "warmup", instances=2, references=2, queries=1, distractors=2, seed=seed,
                    size=size, workers=workers, progress=False)
        for k in range(repeats):
            cpu_before = _cpu_seconds()
            summary = make_museum(Path(tmp) / f"run{k}", instances=instances, references=references,
                                  queries=queries, distractors=distractors, seed=seed + k, size=size,
                                  workers=workers, progress=False)
            cpu = _cpu_seconds() - cpu_before
            runs.append(summary["run"] | {"images": summary["images"], "cpu_seconds": round(cpu, 3),
                                          "cpu_ms_per_image": round(1000 * cpu / summary["images"], 2)})
    rates = [r["images_per_s"] for r in runs]
    cpu_ms = statistics.median(r["cpu_ms_per_image"] for r in runs)
    return {
        "benchmark": "make_museum_speed",
        "museum": {"instances": instances, "references": references, "queries": queries,
                   "distractors": distractors, "size": size},
        "workers": runs[0]["workers"],
        "images_per_s": {"median": statistics.median(rates), "min": min(rates), "max": max(rates)},
        "cpu_ms_per_image": cpu_ms,
        # what the workers would reach with a core each to themselves (perfect scaling assumed)
        "images_per_s_if_cores_free": round(runs[0]["workers"] * 1000 / cpu_ms, 1),
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "numpy": np.__version__, "opencv": cv2.__version__},
    }


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--references", type=int, default=5)
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--distractors", type=int, default=20)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--workers", type=int, default=None, help="default: one per CPU")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    result = measure(instances=args.instances, references=args.references, queries=args.queries,
                     distractors=args.distractors, size=args.size, workers=args.workers, repeats=args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    rate = result["images_per_s"]
    print(f"make-museum: {rate['median']:.1f} images/s (median of {args.repeats}; min {rate['min']:.1f}, "
          f"max {rate['max']:.1f}) at {args.size} px with {result['workers']} workers; "
          f"{result['cpu_ms_per_image']:.1f} CPU ms per image, "
          f"{result['images_per_s_if_cores_free']:.1f} images/s if those cores were free")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

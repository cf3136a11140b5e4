"""``muselens evaluate DATA --method ...``: the measuring stick, before and after training."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from muselens.core.data.museum_dataset import DatasetError, MuseumDataset
from muselens.core.metrics.threshold import DEFAULT_TARGET_FAR
from muselens.training.evaluation.methods import METHODS
from muselens.training.evaluation.protocol import EvalOptions, evaluate_methods, unknown_images
from muselens.training.evaluation.results_report import text_report, write_results


def _methods(value: str) -> list[str]:
    if value.strip() == "none":  # only a served bundle (muselens evaluate --bundle)
        return []
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {unknown or value!r}; choose from: {', '.join(METHODS)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="museum dataset directory")
    parser.add_argument("--method", type=_methods, default=["im-gem"], metavar="M[,M...]",
                        help="one or more of: " + ", ".join(METHODS) + " (default im-gem); none: only --bundle")
    parser.add_argument("--backbone", default=None, help="CNN backbone (default tf_efficientnet_lite0)")
    parser.add_argument("--size", type=int, default=None,
                        help="short side in pixels for CNN methods (default 448), long side for SIFT (640)")
    parser.add_argument("--multiscale", action="store_true", help="average descriptors over S, S/√2, S/2")
    parser.add_argument("--instance-avg", action="store_true", help="one averaged descriptor per artwork")
    parser.add_argument("--qe", type=int, default=0, metavar="K", help="query expansion with the top K")
    parser.add_argument("--dba", type=int, default=0, metavar="K", help="database-side augmentation, K neighbours")
    parser.add_argument("--no-clustering", action="store_true", help="skip the k-means NMI/F1")
    parser.add_argument("--unknown", type=Path, metavar="DIR",
                        help="photos of artworks the museum does not hold (images directly inside DIR): "
                             "report the share accepted at the threshold a bundle would ship, and the "
                             "queries and distractors accepted there")
    parser.add_argument("--target-far", type=float, default=DEFAULT_TARGET_FAR,
                        help="target false-accept rate of that threshold, as export's (default %(default)s)")
    parser.add_argument("--run", type=Path, help="training run folder, for the ft and proposed methods")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--workers", type=int, default=2, help="processes for SIFT extraction")
    parser.add_argument("--out", type=Path, default=Path("evaluation-output"),
                        help="folder for results.json, results.md and evaluation.png")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    if not args.method:
        print("error: --method none leaves no method to measure", file=sys.stderr)
        return 2
    try:
        dataset = MuseumDataset.load(args.data)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not dataset.queries:
        print(f"error: {args.data} has no queries to evaluate: add queries/<instance_id>/*.jpg",
              file=sys.stderr)
        return 2
    try:
        unknown = None if args.unknown is None else unknown_images(args.unknown)
        if not 0.0 <= args.target_far < 1.0:
            raise ValueError(f"--target-far must be in [0, 1), got {args.target_far}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    options = EvalOptions(instance_avg=args.instance_avg, qe=args.qe, dba=args.dba,
                          clustering=not args.no_clustering, shipped_far=args.target_far)
    try:
        results = evaluate_methods(dataset, args.method, options, unknown=unknown, progress=not args.no_progress,
                                   backbone=args.backbone, size=args.size, multiscale=args.multiscale,
                                   device=args.device, workers=args.workers, run=args.run)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_results(args.out, results, dataset=str(args.data), command="muselens " + shlex.join(args.argv))
    print(text_report(results))
    skipped = sum(r.counts["skipped"] for r in results)
    if skipped:
        print(f"\n{skipped} unreadable images were skipped: see {args.out / 'results.json'}")
    print(f"\nwrote {args.out / 'results.json'}, {args.out / 'results.md'}, {args.out / 'evaluation.png'}")
    return 0

"""``muselens make-museum``: write a seeded synthetic museum dataset.

A thin wrapper over :func:`muselens.core.synthetic.museum.make_museum`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from muselens.core.synthetic.museum import make_museum


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="folder to write the museum to (created if missing)")
    parser.add_argument("--instances", type=int, required=True, help="number of artworks")
    parser.add_argument("--references", type=int, required=True, help="reference photos per artwork")
    parser.add_argument("--queries", type=int, required=True, help="query photos per artwork")
    parser.add_argument("--distractors", type=int, required=True, help="photos of no artwork, in total")
    parser.add_argument("--seed", type=int, required=True, help="the same seed gives byte-identical files")
    parser.add_argument("--size", type=int, default=640, help="long side of every photo in pixels (default 640)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per CPU); does not change the files")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder that holds no previous synthetic museum")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def main(args: argparse.Namespace) -> int:
    try:
        summary = make_museum(
            args.out,
            instances=args.instances,
            references=args.references,
            queries=args.queries,
            distractors=args.distractors,
            seed=args.seed,
            size=args.size,
            workers=args.workers,
            progress=not args.no_progress,
            overwrite=args.overwrite,
        )
    except (ValueError, TypeError, FileExistsError, NotADirectoryError) as err:
        print(f"muselens make-museum: error: {err}", file=sys.stderr)
        return 2
    run = summary["run"]
    print(f"wrote {summary['images']} images to {args.out} in {run['seconds']:.1f} s "
          f"({run['images_per_s']:.1f} images/s, {run['workers']} workers)")
    return 0

"""``muselens make-walk``: a seeded visitor's walk past a synthetic museum's artworks.

A thin wrapper over :func:`muselens.core.synthetic.walk.make_walk`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from muselens.core.synthetic.walk import make_walk


def parse_size(text: str) -> tuple[int, int]:
    """``640x360`` -> (640, 360)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must look like 640x360 (WIDTHxHEIGHT), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("museum", type=Path, help="a synthetic museum folder written by make-museum")
    parser.add_argument("--out", type=Path, required=True, help="folder for frames/, the video and walk.json")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives byte-identical frames (default 0)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the walk (default 20)")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second (default 10)")
    parser.add_argument("--size", type=parse_size, default=(640, 360), help="frame size WIDTHxHEIGHT (default 640x360)")
    parser.add_argument("--artworks", default=None,
                        help="comma-separated instance ids to hang, in order (default: as many as fit, seeded)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder that holds no previous walk")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def main(args: argparse.Namespace) -> int:
    artworks = None if args.artworks is None else [a.strip() for a in args.artworks.split(",") if a.strip()]
    try:
        summary = make_walk(args.museum, args.out, seed=args.seed, seconds=args.seconds, fps=args.fps,
                            size=args.size, artworks=artworks, progress=not args.no_progress,
                            overwrite=args.overwrite)
    except (ValueError, TypeError, FileExistsError, NotADirectoryError) as err:
        print(f"muselens make-walk: error: {err}", file=sys.stderr)
        return 2
    w, h = summary.size
    print(f"wrote {summary.frames} frames ({w}x{h}, {summary.fps:g} fps) to {summary.out} in {summary.elapsed_s:.1f} s; "
          f"video {summary.video.name} ({summary.codec})")
    print(f"artworks passed: {len(summary.artworks_passed)} of {len(summary.artworks)} hung "
          f"({', '.join(summary.artworks_passed)}); stopped at: {', '.join(summary.paused_at) or 'none'}")
    print(f"seconds with no artwork in view: {summary.seconds_without_artwork:.1f} of {summary.seconds:g}; "
          f"frames with a passer-by hiding an artwork: {summary.occluded_frames}")
    return 0

"""``muselens check-data DIR``: print :func:`~muselens.core.data.dataset_report.check_dataset`'s
report (and write it as JSON); exit 0 when the dataset is usable, 1 when not, 2 when it is not a
museum dataset at all."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from muselens.core.data.dataset_report import check_dataset, format_report
from muselens.core.data.museum_dataset import DatasetError, MuseumDataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="museum dataset directory")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--workers", type=int, default=4, help="decoding threads")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main(args: argparse.Namespace) -> int:
    try:
        dataset = MuseumDataset.load(args.data)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = check_dataset(dataset, workers=args.workers, progress=not args.no_progress)
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    return 0 if report.usable else 1

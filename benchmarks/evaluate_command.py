"""``muselens evaluate``: retrieval methods on a museum, and with ``--bundle`` the product's own modes.

The methods (SIFT, the ImageNet baselines, a run's FT and proposed descriptors) are
:mod:`muselens.training.evaluation.evaluate_command`'s. ``--bundle`` adds what only the runtime
can measure, so it lives here, above both: the exported bundle served by ``muselens serve`` and
sent every query, distractor and ``--unknown`` photo of the museum on unary calls as the server
answers by default (geometrically verified where the bundle has local features), on unary calls
with verification off (the descriptor alone), and on one stream
(:mod:`muselens.benchmarks.through_service`), at the bundle's shipped threshold. Written to
``OUT/served.json`` beside the methods' results and printed as a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from muselens.benchmarks import common
from muselens.benchmarks.served_table import served_table
from muselens.training.evaluation import evaluate_command as methods_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    methods_command.add_arguments(parser)
    parser.add_argument("--bundle", type=Path, metavar="BUNDLE",
                        help="also serve this exported bundle and measure it as a phone meets it: unary verified, "
                             "unary descriptor only, stream (use --method none for the bundle alone)")


def main(args: argparse.Namespace) -> int:
    if args.bundle is None:
        return methods_command.main(args)
    from muselens.core.data.museum_dataset import DatasetError, MuseumDataset
    from muselens.runtime.bundle import BundleError, load_bundle
    from muselens.training.evaluation.protocol import unknown_images

    try:  # every argument checked before an hour of methods runs
        with load_bundle(args.bundle):
            pass
        if not MuseumDataset.load(args.data).queries:
            raise DatasetError(f"{args.data} has no queries to send to the service")
        if args.unknown is not None:
            unknown_images(args.unknown)
    except (BundleError, DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.method:
        code = methods_command.main(args)
        if code:
            return code
    from muselens.benchmarks.through_service import served_modes

    print(f"serving {args.bundle}: every photo on unary calls (verified, descriptor only) and on a stream",
          file=sys.stderr)
    served = served_modes(args.bundle, args.data, args.unknown, log=args.out / "serve.log")
    path = args.out / "served.json"
    path.write_text(json.dumps({"command": common.command_line(getattr(args, "argv", None)),
                                "dataset": str(args.data), "environment": common.environment(), **served},
                               indent=2) + "\n")
    print("\n" + served_table(served))
    print(f"\nwrote {path}")
    return 0

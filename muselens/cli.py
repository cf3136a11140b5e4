"""The ``muselens`` command: one entry point, one subcommand per task.

Each subcommand lives next to the library code it drives, in a module that exposes
``add_arguments(parser)`` and ``main(args) -> int``. Modules are imported only when their
subcommand runs, so ``muselens --help`` is instant and torch-free installs can still run
the torch-free subcommands.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from muselens import __version__


@dataclass(frozen=True)
class Subcommand:
    module: str
    summary: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "demo": Subcommand("muselens.demo", "the end-to-end demo on a seeded synthetic museum"),
    "make-museum": Subcommand(
        "muselens.core.synthetic.make_museum_command", "build a seeded synthetic museum dataset"
    ),
    "make-walk": Subcommand(
        "muselens.core.synthetic.make_walk_command",
        "render a seeded visitor's walk past a synthetic museum: frames, video, per-frame ground truth",
    ),
    "check-data": Subcommand(
        "muselens.core.data.check_data_command", "report what a museum dataset holds and what is wrong with it"
    ),
    "train": Subcommand(
        "muselens.training.train_command", "fine-tune a museum's descriptor: classification, FCN, region descriptors"
    ),
    "export": Subcommand(
        "muselens.export.export_command",
        "export a trained run to ONNX (fp32/fp16/int8), check parity and drift, write the museum's bundle",
    ),
    "retrain": Subcommand(
        "muselens.export.retrain_command",
        "the per-museum one-liner: train, evaluate, export, then validate the bundle through the runtime",
    ),
    "bench": Subcommand(
        "muselens.benchmarks.bench_command", "benchmarks: latency, streams, accuracy, training cost, bad input, soak"
    ),
    "evaluate": Subcommand(
        "muselens.benchmarks.evaluate_command",
        "measure retrieval methods on a museum: mP@1, mAP, Recall@K, clustering, open set; a bundle as served",
    ),
    "serve": Subcommand(
        "muselens.runtime.server.serve_command",
        "serve a bundle over gRPC: streaming recognition, heatmaps, enrolment, hot reload",
    ),
    "recognize": Subcommand("muselens.runtime.client.recognize_command", "ask a running server what images show"),
    "stream": Subcommand(
        "muselens.runtime.client.stream_command", "stream a video, camera or folder of frames to a running server"
    ),
}


def _load(name: str):
    return importlib.import_module(SUBCOMMANDS[name].module)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="muselens",
        description="Per-museum artwork recognition: datasets, training, export, serving, benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"muselens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Only the chosen subcommand's module is imported; the others are listed by summary.
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, spec in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=spec.summary, description=spec.summary)
        if name == chosen:
            module = _load(name)
            # A command with sub-kinds of its own (bench) picks its chosen kind from argv too.
            if getattr(module, "NESTED", False):
                module.add_arguments(sp, argv)
            else:
                module.add_arguments(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    args.argv = argv  # the exact command, for results files that say how they were made
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "allow_ort_telemetry", False):
        # Every command: importing onnxruntime alone writes a device id and an event under
        # ~/.cache/Microsoft unless this is set first (serve's --allow-ort-telemetry lets it).
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    return int(_load(args.command).main(args) or 0)

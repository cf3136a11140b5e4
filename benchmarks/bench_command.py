"""``muselens bench KIND ...``: the measurements hardware buyers and we decide from.

Each kind lives in its own module with ``add_arguments(parser)``, ``main(args) -> int`` and
``markdown(folder, data) -> str`` (its section of benchmarks/RESULTS.md). Every run writes
``<out>/bench.json`` -- ``{"benchmark": KIND, "command": ..., "environment": ..., ...}`` -- plus
plots, and :mod:`muselens.benchmarks.results_md` renders every such folder under
``benchmarks/results/`` with the module named by its ``benchmark`` field.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS: dict[str, tuple[str, str]] = {
    "latency": ("muselens.benchmarks.latency",
                "per-stage latency p50/p95/p99 and FPS per size and backend: in process, unary and streaming gRPC"),
    "streams": ("muselens.benchmarks.streams",
                "N concurrent simulated cameras against a server: FPS, end-to-end p50/p99, drops, utilisation"),
    "accuracy": ("muselens.benchmarks.accuracy",
                 "the thesis' Table 5.3: every method, with and without instance-averaging, QE and DBA"),
    "training": ("muselens.benchmarks.training_cost",
                 "the thesis' Tables 5.1/5.2: per-stage training time and memory, per-image test time and memory"),
    "bad-input": ("muselens.benchmarks.bad_input",
                  "thousands of bad frames and messages through unary and streaming calls: outcomes, RSS growth"),
    "real-photos": ("muselens.benchmarks.real_photos",
                    "every real photo set: SIFT, IM-GeM, IM-R-MAC and the retrained bundle through gRPC, open set"),
    "training-speed": ("muselens.benchmarks.training_speed",
                       "stages 1-2 from pooled trunk features against fresh augmentation: time per stage, "
                       "accuracy over seeds"),
    "soak": ("muselens.benchmarks.soak", "N streams for M minutes: throughput, p99 and RSS over time"),
    "reconnect": ("muselens.benchmarks.reconnect",
                  "kill the server mid-stream and restart it: how long the camera stream stays dark"),
    "verification": ("muselens.benchmarks.verification_scale",
                     "geometric verification by museum size: local features' memory per reference, cost per query"),
    "inference-settings": ("muselens.benchmarks.inference_settings",
                           "ONNX Runtime settings, variants and sizes measured: optimisation, threads, spinning, "
                           "arena; throughput with several inferences in flight"),
    "abuse": ("muselens.benchmarks.abuse",
              "every attack of issue 23, bounded, on loopback: statuses, server CPU and RSS, a good client's p99"),
}


def load(kind: str):
    return importlib.import_module(BENCHMARKS[kind][0])


NESTED = True  # muselens.cli passes argv, so only the chosen kind's module is imported


def add_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="KIND", required=True)
    chosen = next((a for a in argv[argv.index("bench") + 1:] if a in BENCHMARKS), None) if "bench" in argv else None
    for kind, (_, summary) in BENCHMARKS.items():
        sp = sub.add_parser(kind, help=summary, description=summary)
        if kind == chosen:
            load(kind).add_arguments(sp)


def main(args: argparse.Namespace) -> int:
    return int(load(args.benchmark).main(args) or 0)

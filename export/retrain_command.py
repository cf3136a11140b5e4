"""``muselens retrain DATA --out BUNDLE``: train, evaluate, export and validate a museum in one go.

A thin layer over :func:`muselens.export.retrain.retrain`: the configuration flags are the
training configuration's own (:func:`~muselens.training.train_config.add_config_arguments`, as
``muselens train``), the bundle's are :func:`~muselens.export.bundle.add_bundle_arguments` (as
``muselens export``). The summary is printed on stdout and written to ``BUNDLE.retrain.json``;
progress goes to stderr. Exit status as ``muselens export``: 0 success, 1 a result refused
(parity, validation), 2 unusable inputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from muselens.export.bundle import ExportOptions, add_bundle_arguments
from muselens.export.retrain import ValidationError, retrain, summary_path
from muselens.runtime.bundle import BundleError, Threshold


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from muselens.training.train_config import add_config_arguments

    parser.add_argument("data", type=Path, help="museum dataset directory")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    add_config_arguments(parser)
    add_bundle_arguments(parser)
    parser.add_argument("--device", default="cpu", help="training device: cpu or cuda")
    parser.add_argument("--run-dir", type=Path, default=None, help="training run folder (default: BUNDLE.run)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir after a stop")
    parser.add_argument("--no-pretrained", action="store_true",
                        help="start from random weights instead of ImageNet's (tests, ablations)")
    parser.add_argument("--no-progress", action="store_true", help="no training progress bars")


def main(args: argparse.Namespace) -> int:
    from muselens.export.onnx_export import ParityError
    from muselens.export.precision import DriftError
    from muselens.core.data.museum_dataset import DatasetError
    from muselens.training.checkpoint import CheckpointError
    from muselens.training.train_config import ConfigError, config_from_args

    try:
        config = config_from_args(args)  # all three stages: stage 3 makes the descriptor
        options = ExportOptions(precisions=args.precision, name=args.name, bundle_version=args.bundle_version,
                                latency_runs=args.latency_runs, local_features=args.local_features,
                                vote_index=args.vote_index)
        out = retrain(args.data, args.out, config, options, device=args.device, run_dir=args.run_dir,
                      resume=args.resume, pretrained=not args.no_pretrained, train_progress=not args.no_progress)
    except (DriftError, ParityError, ValidationError) as exc:  # done, but the result is refused
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, DatasetError, CheckpointError, BundleError, FileExistsError, ValueError,
            TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    val = out["validation_metrics"]
    fp32 = out["export_metrics"]["fp32"]
    rt = out["runtime_validation"]
    print(f"run        {out['run']}")
    if val:
        print(f"validation mP@1 {100 * val['val_mp_at_1']:.2f}  mAP {100 * val['val_map']:.2f} (PyTorch, stage "
              f"{val['stage']})")
    if "mp_at_1" in fp32:
        print(f"bundle     mP@1 {100 * fp32['mp_at_1']:.2f}  mAP {100 * fp32['map']:.2f} (fp32 ONNX Runtime)")
    if "mp_at_1" in rt:
        print(f"runtime    mP@1 {100 * rt['mp_at_1']['runtime']:.2f} (matches the manifest)")
    print(f"references re-described: min cosine {min(r['cosine'] for r in rt['references']):.6f}")
    for variant, reason in out["refused_variants"].items():
        print(f"refused    {variant}: {reason}")
    print(f"threshold  {Threshold.from_dict(out['threshold']).describe()}")
    print(f"bundle     {out['bundle']}")
    print(f"summary    {summary_path(args.out)}")
    return 0

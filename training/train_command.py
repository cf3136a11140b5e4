"""``muselens train DATA --out RUN``: fine-tune a museum's descriptor (stages 1-3 of paper 004).

Started by torchrun (``torchrun --nproc_per_node=N -m muselens train DATA --out RUN --device cuda``)
it trains on N processes, one per GPU; see :mod:`muselens.training.distributed`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from muselens.core.data.museum_dataset import DatasetError
from muselens.training.checkpoint import CheckpointError
from muselens.training.train_config import ConfigError, add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="museum dataset directory")
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, curves, model)")
    add_config_arguments(parser)
    parser.add_argument("--stages", help="comma-separated subset of 1,2,3 (default: all)")
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda; under torchrun each process takes GPU LOCAL_RANK (NCCL), or gloo on cpu")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out after a stop")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    from muselens.training.distributed import Distributed, launched_by_torchrun
    from muselens.training.run import TrainingRun

    distributed = None
    try:
        if launched_by_torchrun():
            distributed = Distributed.from_env(args.device)
        config = config_from_args(args, stages=args.stages)
        run = TrainingRun(args.data, args.out, config, device=args.device, resume=args.resume,
                          progress=not args.no_progress, distributed=distributed)
        summary = run.run()
    except (ConfigError, DatasetError, CheckpointError, FileExistsError, ValueError) as error:
        rank = f"rank {distributed.rank}: " if distributed is not None and distributed.enabled else ""
        print(f"error: {rank}{error}", file=sys.stderr)
        return 2
    finally:
        if distributed is not None:
            distributed.destroy()
    if distributed is not None and not distributed.is_main:
        return 0
    last = {}
    for row in summary["history"]:
        last[row["stage"]] = row
    print(f"{'stage':<7}{'epochs':>7}{'seconds':>10}{'peak RSS MiB':>14}{'val mP@1':>10}{'val mAP':>9}")
    for stage, info in summary["stages"].items():
        row = last.get(int(stage), {})
        epochs = sum(1 for h in summary["history"] if h["stage"] == int(stage))
        print(f"{stage:<7}{epochs:>7}{info['seconds']:>10.1f}{info.get('peak_rss_mib', float('nan')):>14.0f}"
              f"{100 * row.get('val_mp_at_1', float('nan')):>10.2f}{100 * row.get('val_map', float('nan')):>9.2f}")
    print(f"\nwrote {args.out}/model.pt, history.json, curves.png, config.yaml")
    return 0

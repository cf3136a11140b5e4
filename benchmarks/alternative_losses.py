"""The stage-3 losses of papers 002/003 trained for ``bench accuracy``: one run per loss, made
with ``muselens train``'s machinery (:class:`~muselens.training.run.TrainingRun`) and reused when
a finished run with exactly this configuration exists; stages 1-2 are shared with another run."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from muselens.training.train_config import ConfigError, TrainConfig, load_config


def _differences(have: Any, want: Any, path: str = "") -> list[str]:
    if isinstance(have, dict) and isinstance(want, dict):
        out = []
        for key in sorted(set(have) | set(want)):
            out += _differences(have.get(key), want.get(key), f"{path}.{key}".lstrip("."))
        return out
    return [] if have == want else [f"{path}: {have!r} != {want!r}"]


def alternative_config(loss: str, base: TrainConfig) -> TrainConfig:
    data = base.to_dict()
    data["stage3"]["loss"] = loss
    return load_config(None, data)


def ensure_alternative(data: Path, root: Path, loss: str, config: TrainConfig, *, device: str,
                       progress: bool, share_from: Sequence[Path] = ()) -> dict[str, Any]:
    """Train ``root/<loss>`` unless a finished run with exactly this configuration is there
    (resuming a stopped one); a run made with another configuration is refused, not reused.

    A new run starts at stage 3 from the first run of ``share_from`` whose stages 1-2 it shares
    (same museum, weights and settings but ``stage3``): the losses differ only in stage 3."""
    from muselens.training.run import STAGE3_START, TrainingRun, start_at_stage3

    run = root / loss
    if (run / "config.yaml").exists():
        diff = _differences(load_config(run / "config.yaml").to_dict(), config.to_dict())
        if diff:
            raise ConfigError(f"{run} holds a run trained with another configuration ({'; '.join(diff[:4])}): "
                              "remove it or choose another --out")
    if (run / "model.pt").exists() and (run / "history.json").exists():
        print(f"reusing finished run {run} (stage-3 loss {loss})", file=sys.stderr)
        return {"loss": loss, "run": str(run), "trained_now": False}
    shared = None
    if not (run / "checkpoint.pt").exists():
        for source in share_from:
            if not (source / STAGE3_START).exists():
                continue
            try:
                start_at_stage3(source, run, config, data=data)
            except ValueError as exc:
                print(f"not sharing stages 1-2: {exc}", file=sys.stderr)
                continue
            shared = str(source)
            print(f"{run}: stages 1-2 from {source}", file=sys.stderr)
            break
    resume = (run / "checkpoint.pt").exists()
    print(f"{'resuming' if resume else 'training'} {run} (stage-3 loss {loss})", file=sys.stderr)
    started = time.perf_counter()
    TrainingRun(data, run, config, device=device, resume=resume, progress=progress).run()
    return {"loss": loss, "run": str(run), "trained_now": True, "resumed": resume and shared is None,
            "stages_1_2_from": shared, "wall_s": round(time.perf_counter() - started, 2)}


def training_seconds(run: Path) -> dict[str, float] | None:
    path = run / "history.json"
    if not path.exists():
        return None
    stages = json.loads(path.read_text()).get("stages", {})
    return {str(s): float(v["seconds"]) for s, v in stages.items() if "seconds" in v}

"""What every benchmark records the same way: the machine, percentiles, memory, the bench.json file.

Torch-free, so the serving benchmarks run on a machine that has only the runtime installed.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from muselens import __version__
from muselens.core.machine import cpu_model


def gpu_names() -> list[str]:
    """GPUs as nvidia-smi names them (empty without an NVIDIA driver)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def environment() -> dict[str, Any]:
    """The machine and versions a measurement was taken on (goes into every bench.json)."""
    env: dict[str, Any] = {"muselens": __version__, "python": platform.python_version(), "cpu": cpu_model(),
                           "cpus": os.cpu_count(), "gpus": gpu_names()}
    try:
        import onnxruntime as ort

        env["onnxruntime"] = ort.__version__
        env["ort_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    env["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return env


def percentiles(values_ms: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99/mean/min/max and count of a list of milliseconds (NaN-free; empty gives count 0)."""
    v = np.asarray([x for x in values_ms if x == x], dtype=np.float64)
    if v.size == 0:
        return {"count": 0}
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "p99": float(np.percentile(v, 99)), "mean": float(v.mean()), "min": float(v.min()),
            "max": float(v.max()), "count": int(v.size)}


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process now, in MiB (/proc; this process by default)."""
    path = Path(f"/proc/{pid or os.getpid()}/status")
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise OSError(f"no VmRSS in {path}")


def command_line(argv: Sequence[str] | None) -> str:
    return "muselens " + " ".join(argv or [])


def write_bench(out: Path, kind: str, argv: Sequence[str] | None, payload: Mapping[str, Any]) -> Path:
    """Write ``out/bench.json``: ``{"benchmark", "command", "environment", **payload}``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"
    data = {"benchmark": kind, "command": command_line(argv), "environment": environment(), **payload}
    path.write_text(json.dumps(data, indent=2))
    return path


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def images_in(folder: Path) -> list[Path]:
    """The photos directly inside ``folder``, sorted (none if it does not exist)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def machine_line(env: Mapping[str, Any]) -> str:
    """One line naming the hardware, for RESULTS.md (GPU first when there is one)."""
    gpus = ", ".join(env.get("gpus") or [])
    parts = [f"GPU {gpus}" if gpus else None, f"CPU {env.get('cpu')} x{env.get('cpus')}",
             f"onnxruntime {env.get('onnxruntime', '?')}", f"muselens {env.get('muselens')}", env.get("created")]
    return "; ".join(p for p in parts if p)

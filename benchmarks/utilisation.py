"""What a server process uses while it is measured: its CPU seconds (``/proc``) and the GPU's
utilisation and memory (``nvidia-smi`` sampled on a thread, when there is one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (``/proc/<pid>/stat`` utime + stime)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rpartition(")")[2].split()  # after "pid (comm)": state is fields[0], utime [11], stime [12]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GpuSampler:
    """GPU utilisation and memory from ``nvidia-smi`` every ``interval`` seconds, on a thread."""

    QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.available = shutil.which("nvidia-smi") is not None
        self.samples: list[tuple[float, float]] = []  # (util %, memory MiB), summed over GPUs for memory
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="muselens-gpu-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(self.QUERY, capture_output=True, text=True, timeout=5, check=True).stdout
                rows = [[float(v) for v in line.split(",")] for line in out.splitlines() if line.strip()]
                self.samples.append((max(r[0] for r in rows), sum(r[1] for r in rows)))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
                self.error = f"nvidia-smi failed: {exc}"
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def result(self) -> dict[str, Any]:
        if not self.available:
            return {"unavailable": "nvidia-smi not found on this machine"}
        if not self.samples:
            return {"unavailable": self.error or "nvidia-smi gave no samples"}
        util = [s[0] for s in self.samples]
        memory = [s[1] for s in self.samples]
        return {"util_percent_mean": sum(util) / len(util), "util_percent_max": max(util),
                "memory_used_mib_max": max(memory), "samples": len(util),
                **({"error": self.error} if self.error else {})}

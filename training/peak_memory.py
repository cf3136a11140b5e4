"""Peak memory per stage (the thesis' Tables 5.1 and 5.2): process RSS and CUDA allocations."""

from __future__ import annotations

import resource
from pathlib import Path

import torch


def reset_peaks(device: torch.device) -> bool:
    """Start a new measurement window; False when the kernel does not let us reset peak RSS
    (then :func:`peaks` reports the process-lifetime peak, and says so)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def peaks(device: torch.device, window_reset: bool) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    hwm = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        pass
    if hwm is None:
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        window_reset = False
    out["peak_rss_mib"] = round(hwm, 1)
    out["rss_window"] = "stage" if window_reset else "process lifetime"
    if device.type == "cuda":
        out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out

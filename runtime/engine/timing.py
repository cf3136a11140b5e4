"""The bare-model latency probe: one ``session.run`` timed, the baseline overheads are measured against."""

from __future__ import annotations

from muselens.core import checks
import time
from pathlib import Path

import numpy as np

from muselens.runtime.engine.backends import DEFAULT_BACKEND, open_backend


def latency_ms(model_path: Path | str, size: tuple[int, int], *, runs: int = 10, warmup: int = 2,
               threads: int | None = None, seed: int = 0, backend: str = DEFAULT_BACKEND) -> dict[str, float]:
    """Wall-clock ms per image of one inference at ``size`` (H, W): p50/p95/p99/mean after warm-up."""
    checks.positive_int(runs, "runs")
    checks.integer(warmup, "warmup", low=0)
    engine = open_backend(model_path, backend, threads=threads)
    names = list(engine.output_names)
    image = np.random.default_rng(seed).integers(0, 256, (1, *size, 3), dtype=np.uint8)
    for _ in range(warmup):
        engine.run(image, names)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        engine.run(image, names)
        times.append((time.perf_counter() - start) * 1000.0)
    t = np.asarray(times)
    return {"ms_p50": float(np.percentile(t, 50)), "ms_p95": float(np.percentile(t, 95)),
            "ms_p99": float(np.percentile(t, 99)), "ms_mean": float(t.mean()), "runs": runs,
            "height": size[0], "width": size[1], "backend": backend}

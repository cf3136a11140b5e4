"""What the serving benchmarks send and how they read the answers: frames, stage timings, ratios.

Frames are real encoded images: a museum's query photos when a dataset is given, otherwise
camera-like frames synthesised from a seed (smooth lighting, framed "paintings" with texture,
sensor noise; 1280x720, JPEG quality 90), so a run is reproducible without any data and the
decoder sees what a phone or webcam sends -- not random noise, which JPEG cannot compress.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from muselens.core import checks
from muselens.benchmarks.common import percentiles
from muselens.core.data.images import encode_jpeg

CAMERA_SIZE = (1280, 720)  # width, height
JPEG_QUALITY = 90
MAX_DISTINCT = 32  # synthetic frames beyond this many repeat (generation costs ~20 ms each)
STAGES = ("queue", "decode", "preprocess", "track", "inference", "match", "verify", "heatmap", "total")


def csv_ints(text: str) -> list[int]:
    """``"224,320,448"`` -> ``[224, 320, 448]`` (argparse type): positive, no duplicates."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"expected positive integers, got {text!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate values in {text!r}")
    return values


def csv_names(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise ValueError(f"expected comma-separated names, got {text!r}")
    return list(dict.fromkeys(names))


def camera_frame(seed: int, width: int = CAMERA_SIZE[0], height: int = CAMERA_SIZE[1]) -> np.ndarray:
    """One seeded RGB uint8 frame that looks like a gallery wall through a camera."""
    if width < 16 or height < 16:
        raise ValueError(f"frame size must be at least 16x16, got {width}x{height}")
    rng = np.random.default_rng(seed)
    # Wall: a smooth colour field (low-frequency noise upsampled) under a lighting gradient.
    coarse = rng.uniform(90, 200, (4, 6, 3)).astype(np.float32)
    wall = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    wall *= np.linspace(0.75, 1.1, width, dtype=np.float32)[None, :, None]
    image = wall
    # Two to four framed paintings: mid-frequency texture with strokes, in a dark frame.
    for _ in range(int(rng.integers(2, 5))):
        w = int(rng.integers(width // 8, width // 3))
        h = int(w * rng.uniform(0.6, 1.4))
        h = min(h, height - 8)
        x0 = int(rng.integers(0, max(1, width - w)))
        y0 = int(rng.integers(0, max(1, height - h)))
        texture = rng.uniform(0, 255, (max(2, h // 24), max(2, w // 24), 3)).astype(np.float32)
        painting = cv2.resize(texture, (w, h), interpolation=cv2.INTER_CUBIC)
        for _ in range(12):
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
            cv2.line(painting, p1, p2, colour, int(rng.integers(2, 9)))
        image[y0:y0 + h, x0:x0 + w] = painting
        cv2.rectangle(image, (x0, y0), (x0 + w - 1, y0 + h - 1), (40.0, 30.0, 20.0), max(3, w // 40))
    image += 3.0 * rng.standard_normal(image.shape, dtype=np.float32)  # sensor noise
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_frames(count: int, *, seed: int = 0, size: tuple[int, int] = CAMERA_SIZE) -> list[bytes]:
    """``count`` JPEG frames (``min(count, MAX_DISTINCT)`` distinct ones, repeated in order)."""
    checks.positive_int(count, "count")
    distinct = [encode_jpeg(camera_frame(seed + i, *size), JPEG_QUALITY) for i in range(min(count, MAX_DISTINCT))]
    return [distinct[i % len(distinct)] for i in range(count)]


def dataset_frames(root: Path, count: int) -> list[bytes]:
    """``count`` frames from a museum's query photos (all of its images if it has no queries), in order,
    repeated when there are fewer."""
    from muselens.core.data.museum_dataset import MuseumDataset

    checks.positive_int(count, "count")
    dataset = MuseumDataset.load(root)
    records = dataset.queries or dataset.all_records()
    paths = [r.path for r in records][:count]
    files = [p.read_bytes() for p in paths]
    return [files[i % len(files)] for i in range(count)]


def load_frames(data: Path | None, count: int, *, seed: int = 0,
                size: tuple[int, int] = CAMERA_SIZE) -> tuple[list[bytes], str]:
    """The frames a run sends and one line saying where they came from (for bench.json)."""
    if data is not None:
        frames = dataset_frames(Path(data), count)
        distinct = len(set(frames))
        return frames, f"{distinct} query photos of {data} (as stored)"
    frames = synthetic_frames(count, seed=seed, size=size)
    return frames, (f"{min(count, MAX_DISTINCT)} synthetic camera frames {size[0]}x{size[1]} JPEG q{JPEG_QUALITY}, "
                    f"seed {seed}")


def recognition_timings(recognition: Any) -> dict[str, float]:
    """A ``muselens.v1.Recognition``'s per-stage milliseconds, by stage name."""
    t = recognition.timings
    return {stage: float(getattr(t, f"{stage}_ms")) for stage in STAGES}


def summarise(values_by_stage: Mapping[str, Sequence[float]], reference_ms: float | None) -> dict[str, dict]:
    """Per stage: p50/p95/p99/mean/... and, with a reference (the bare inference p50), each of
    p50/p95/p99/mean as a ratio to it."""
    out: dict[str, dict] = {}
    for stage, values in values_by_stage.items():
        stats: dict[str, Any] = percentiles(values)
        if reference_ms is not None and stats.get("count"):
            if not reference_ms > 0:
                raise ValueError(f"reference latency must be positive, got {reference_ms!r}")
            stats["ratio"] = {k: stats[k] / reference_ms for k in ("p50", "p95", "p99", "mean")}
        out[stage] = stats
    return out


def fps(mean_ms: float) -> float:
    """Frames per second one worker sustains at ``mean_ms`` per frame."""
    return 1000.0 / mean_ms if mean_ms > 0 else float("inf")

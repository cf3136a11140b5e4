"""Which of a bundle's model variants to serve: the fastest on this machine that is as accurate.

A bundle may hold fp32, fp16 and int8 files of one model. Which is fastest depends on the
machine (int8 wins on most CPUs, fp16 only where the hardware has it), so it is measured here,
at start-up, on a frame of the recognition size. Which is accurate enough was measured at export
on the museum's own queries (the manifest's metrics): a variant whose mP@1 lies more than
:data:`MAX_DRIFT_POINTS` below the reference variant's (fp32) is never chosen, however fast, and
neither is one whose accuracy was not measured. ``muselens serve --variant NAME`` skips all this.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from muselens.runtime.bundle import Bundle
from muselens.runtime.engine import Describer

MAX_DRIFT_POINTS = 0.5  # mP@1 points below the reference variant, on the bundle's queries
TIMED_RUNS = 10
WARM_UP_RUNS = 2
FRAME_ASPECT = 16 / 9  # a camera frame's shape for the timing


@dataclass(frozen=True)
class VariantChoice:
    """The variant chosen, why, and what was measured to choose it."""

    variant: str
    reference: str  # the variant the drift is measured against (fp32)
    latency_ms: Mapping[str, float]  # median of the timed runs here, per variant eligible
    drop_points: Mapping[str, float]  # mP@1 points below the reference, per variant measured
    excluded: Mapping[str, str]  # variant -> why it could not be chosen
    queries: int  # the bundle's queries the drift was measured on

    def summary(self) -> str:
        """One line for the operator: what was chosen, against what, and why."""
        timed = ", ".join(f"{v} {ms:.1f} ms" for v, ms in sorted(self.latency_ms.items(), key=lambda kv: kv[1]))
        if timed:
            line = (f"variant {self.variant}: the fastest here of those within {MAX_DRIFT_POINTS:g} mP@1 points of "
                    f"{self.reference} on the bundle's {self.queries} queries ({timed})")
        else:
            line = f"variant {self.variant}: the only one the bundle offers within {MAX_DRIFT_POINTS:g} mP@1 points"
            line += f" of {self.reference}" if self.variant != self.reference else ""
        if self.excluded:
            line += "; not eligible: " + "; ".join(f"{v} ({why})" for v, why in sorted(self.excluded.items()))
        return line

    def to_dict(self) -> dict:
        return {"variant": self.variant, "reference": self.reference, "latency_ms": dict(self.latency_ms),
                "drop_points": dict(self.drop_points), "excluded": dict(self.excluded), "queries": self.queries,
                "max_drop_points": MAX_DRIFT_POINTS}


def eligible_variants(bundle: Bundle, model_format: str = "onnx",
                      max_drop_points: float = MAX_DRIFT_POINTS) -> tuple[str, list[str], dict[str, float], dict[str, str]]:
    """``(reference, eligible, drop points, excluded with reasons)`` from the manifest alone. The
    reference (fp32) is eligible where it is a ``model_format`` file; for a TensorRT backend the
    engines are judged against the fp32 ONNX model's accuracy."""
    manifest = bundle.manifest
    metrics = manifest.metrics
    reference = "fp32" if "fp32" in manifest.models else manifest.default_variant
    reference_mp = metrics.get(reference, {}).get("mp_at_1")
    eligible: list[str] = []
    drops: dict[str, float] = {}
    excluded: dict[str, str] = {}
    for variant, entry in manifest.models.items():
        if entry.format != model_format:
            excluded[variant] = f"a {entry.format} model"
            continue
        if variant == reference:
            eligible.append(variant)
            continue
        measured = metrics.get(variant, {}).get("mp_at_1")
        if reference_mp is None or measured is None:
            excluded[variant] = "its accuracy was not measured on the museum's queries at export"
            continue
        drops[variant] = round((float(reference_mp) - float(measured)) * 100, 4)
        if drops[variant] > max_drop_points:
            excluded[variant] = f"mP@1 {drops[variant]:.2f} points below {reference}"
            continue
        eligible.append(variant)
    return reference, eligible, drops, excluded


def camera_frame(side: int) -> np.ndarray:
    """A blank camera-shaped (16:9) RGB frame of short side ``side``: what inference is timed on."""
    return np.zeros((side, round(side * FRAME_ASPECT), 3), np.uint8)


def timed_runs(run, runs: int, warmup: int = WARM_UP_RUNS) -> list[float]:
    """Milliseconds of each of ``runs`` calls of ``run()``, after ``warmup`` untimed ones."""
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        run()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def time_variant(describer: Describer, runs: int = TIMED_RUNS) -> float:
    """Median milliseconds of one inference of a camera-shaped frame at the recognition size."""
    frame = camera_frame(describer.short_side)
    return statistics.median(timed_runs(lambda: describer.run(frame, ["descriptor"]), runs))


def choose_variant_by_speed(bundle: Bundle, open_describer, *, model_format: str = "onnx",
                            max_drop_points: float = MAX_DRIFT_POINTS, runs: int = TIMED_RUNS) -> VariantChoice:
    """Time every eligible variant (``open_describer(variant) -> Describer``) and choose the fastest."""
    reference, eligible, drops, excluded = eligible_variants(bundle, model_format, max_drop_points)
    if not eligible:
        raise ValueError(f"bundle {bundle.name!r} has no {model_format} variant to serve "
                         f"({'; '.join(f'{v}: {why}' for v, why in excluded.items())})")
    latency: dict[str, float] = {}
    for variant in eligible:
        if len(eligible) == 1:
            latency[variant] = float("nan")  # nothing to choose between: not timed
            break
        describer = open_describer(variant)
        latency[variant] = time_variant(describer, runs)
    chosen = min(eligible, key=lambda v: (latency[v] if latency[v] == latency[v] else 0.0))
    queries = int(bundle.manifest.metrics.get(reference, {}).get("n_queries", 0))
    return VariantChoice(chosen, reference, {v: ms for v, ms in latency.items() if ms == ms}, drops, excluded,
                         queries)

"""What an export reports: the variants side by side, what was left out and why, the threshold, and
the results JSON (the command and machine that measured it). ``muselens export`` prints and writes
these; so does the demo, which exports through the same library call."""

from __future__ import annotations

import json
from pathlib import Path

from muselens.export.bundle import ExportResult


def format_table(result: ExportResult) -> str:
    """The variants side by side: mP@1, mAP (percent), drop, file size, CPU latency."""
    header = f"{'variant':<8} {'mP@1':>7} {'mAP':>7} {'drop':>6} {'MB':>7} {'ms p50':>8} {'ms p95':>8}"
    lines = [header, "-" * len(header)]

    def cell(row: dict, key: str, scale: float = 1.0, fmt: str = ".2f") -> str:
        return format(row[key] * scale, fmt) if key in row else "-"

    for variant, row in result.metrics.items():
        lines.append(f"{variant:<8} {cell(row, 'mp_at_1', 100):>7} {cell(row, 'map', 100):>7} "
                     f"{cell(row, 'mp_at_1_drop_points'):>6} {cell(row, 'size_mb'):>7} "
                     f"{cell(row, 'ms_p50', fmt='.1f'):>8} {cell(row, 'ms_p95', fmt='.1f'):>8}")
    return "\n".join(lines)


def summary(result: ExportResult) -> str:
    """The table, then each variant refused or forced and why, the threshold and the bundle."""
    lines = [format_table(result)]
    lines += [f"refused {variant}: {reason}" for variant, reason in result.refused.items()]
    lines += [f"forced {variant}: {reason}" for variant, reason in result.forced.items()]
    lines.append(f"threshold {result.threshold.describe()}")
    lines.append(f"bundle {result.bundle}" + (f", archive {result.archive}" if result.archive else ""))
    return "\n".join(lines)


def write_results_json(path: Path, result: ExportResult, command: str) -> None:
    """The export's measured metrics per variant, with ``command`` and the machine that measured them."""
    from muselens.training.evaluation.results_report import environment

    payload = {"command": command, "environment": environment(),
               "bundle": str(result.bundle), "metrics": result.metrics, "refused": result.refused,
               "forced": result.forced, "threshold": result.threshold.to_dict(),
               "parity_min_cosine": result.parity.get("min_cosine")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))

"""The product's service modes (:mod:`muselens.benchmarks.through_service`) as a table a person reads.

Light on purpose (no gRPC, no runtime): reports and RESULTS.md render it from a bench.json.
"""

from __future__ import annotations

from typing import Any


def percent(value: float | None) -> str:
    """A rate as a percentage to one decimal; "–" where there is none."""
    return "–" if value is None else f"{100 * value:.1f}"


def served_table(served: dict[str, Any]) -> str:
    """The served modes as a Markdown table (percentages; latency as the server measured it)."""
    service = served["service"]
    lines = [f"Through `muselens serve` ({service['variant']}, bundle {service['bundle_version']}, "
             f"{service['frames']} photos):", "",
             "| mode | mP@1 | mAP | correct accept | distractors accepted | unknowns accepted "
             "| verified right / wrong | server p50 ms |", "|---|---|---|---|---|---|---|---|"]
    for r in served["rows"]:
        verified = "–" if r["verified_right"] is None else f"{percent(r['verified_right'])} / {percent(r['verified_wrong'])}"
        latency = "–" if r["server_ms_p50"] is None else f"{r['server_ms_p50']:.0f}"
        lines.append(f"| {r['label']} | {percent(r['mp_at_1'])} | {percent(r['map'])} | {percent(r['correct_accept_rate'])} | "
                     f"{percent(r['distractor_false_accept_rate'])} | {percent(r['unknown_false_accept_rate'])} | "
                     f"{verified} | {latency} |")
    return "\n".join(lines)

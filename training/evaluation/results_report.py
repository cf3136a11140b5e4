"""Evaluation results for people (a Markdown table, a plot) and for machines (JSON)."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from muselens import __version__
from muselens.core.machine import cpu_model
from muselens.training.evaluation.protocol import MethodResult

COLUMNS = ("method", "mP@1", "mAP", "R@5", "R@10", "NMI", "F1", "NMI×3", "F1×3",
           "AUROC", "CAR@1%FAR", "CAR@5%FAR", "ms/img")


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def row(result: MethodResult | dict[str, Any]) -> list[str]:
    """One table row, from a result or its JSON form (so saved results render the same way)."""
    d = result.to_dict() if isinstance(result, MethodResult) else result
    r = d["retrieval"]
    c = d["clustering"] or {}
    points = {round(p["target_far"], 6): p for p in (d["open_set"] or {}).get("operating_points", [])}
    ms = d["timing"].get("ms_per_image", d["timing"].get("ms_per_query"))
    return [
        d["name"],
        _pct(r["mp_at_1"]), _pct(r["map"]), _pct(r["recall_at_k"].get("5")),
        _pct(r["recall_at_k"].get("10")),
        _pct(c.get("1", {}).get("nmi")), _pct(c.get("1", {}).get("f1")),
        _pct(c.get("3", {}).get("nmi")), _pct(c.get("3", {}).get("f1")),
        _pct((d["open_set"] or {}).get("auroc")),
        _pct(points.get(0.01, {}).get("correct_accept_rate")),
        _pct(points.get(0.05, {}).get("correct_accept_rate")),
        "–" if ms is None else f"{ms:.1f}",
    ]


def markdown_table(results: Sequence[MethodResult | dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    return "\n".join(lines)


def aligned(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    rows = [list(header)] + [list(r) for r in body]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(rows[0]), "-" * (sum(widths) + 2 * (len(widths) - 1))] + [fmt(r) for r in rows[1:]])


def text_table(results: Sequence[MethodResult]) -> str:
    return aligned(COLUMNS, [row(r) for r in results])


def _dict(result: MethodResult | dict[str, Any]) -> dict[str, Any]:
    return result.to_dict() if isinstance(result, MethodResult) else result


def clustering_notes(results: Sequence[MethodResult | dict[str, Any]]) -> list[str]:
    """Why a clustering cell is "–": one line per method and cluster count that could not run."""
    out = []
    for d in map(_dict, results):
        reasons: dict[str, list[str]] = {}
        for m, c in (d["clustering"] or {}).items():
            if c.get("skipped"):
                reasons.setdefault(c["skipped"], []).append("NMI/F1" if m == "1" else f"NMI×{m}/F1×{m}")
        out += [f"{' and '.join(cols)} of {d['name']} not measured: {why}" for why, cols in reasons.items()]
    return out


SHIPPED_COLUMNS = ("method", "threshold", "set by", "correct accepts", "wrong accepts", "unknown accepted",
                   "distractors accepted")


def _share(rate: float | None, n: int) -> str:
    return "–" if rate is None else f"{100 * rate:.2f} ({round(rate * n)}/{n})"


def shipped_rows(results: Sequence[MethodResult | dict[str, Any]]) -> list[list[str]]:
    """One row per result measured at its shipped threshold (those run with unknown photos)."""
    rows = []
    for d in map(_dict, results):
        s = d.get("shipped")
        if s:
            rows.append([d["name"], f"{s['threshold']:.4f}", s["set_by"],
                         _share(s["correct_accept_rate"], s["n_queries"]),
                         _share(s["wrong_accept_rate"], s["n_queries"]),
                         _share(s["unknown_far"], s["n_unknown"]), _share(s["distractor_far"], s["n_distractors"])])
    return rows


def shipped_notes(results: Sequence[MethodResult | dict[str, Any]]) -> list[str]:
    out = []
    for d in map(_dict, results):
        if d.get("shipped"):
            out.append(f"threshold of {d['name']}: {d['shipped']['how']}")
    if out:
        out.append(next(d["shipped"]["rule"] for d in map(_dict, results) if d.get("shipped")))
    return out


SHIPPED_TITLE = "Open set at the shipped threshold (percentages of queries, unknown photos, distractors):"


def markdown_report(results: Sequence[MethodResult | dict[str, Any]]) -> str:
    """The main table, why any clustering cell is "–", and the open set at the shipped threshold."""
    parts = [markdown_table(results)]
    notes = clustering_notes(results)
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes))
    rows = shipped_rows(results)
    if rows:
        parts.append("\n".join([SHIPPED_TITLE, "", "| " + " | ".join(SHIPPED_COLUMNS) + " |",
                                "|" + "---|" * len(SHIPPED_COLUMNS), *("| " + " | ".join(r) + " |" for r in rows),
                                "", *(f"- {n}" for n in shipped_notes(results))]))
    return "\n\n".join(parts)


def text_report(results: Sequence[MethodResult]) -> str:
    parts = [text_table(results)]
    notes = clustering_notes(results)
    if notes:
        parts.append("\n".join(f"– {n}" for n in notes))
    rows = shipped_rows(results)
    if rows:
        parts.append("\n".join([SHIPPED_TITLE, aligned(SHIPPED_COLUMNS, rows), *shipped_notes(results)]))
    return "\n\n".join(parts)


def environment() -> dict[str, Any]:
    import os

    return {"muselens": __version__, "python": platform.python_version(), "cpu": cpu_model(),
            "cpus": os.cpu_count(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_json(path: Path, results: Sequence[MethodResult], *, dataset: str, command: str) -> None:
    payload = {"dataset": dataset, "command": command, "environment": environment(),
               "results": [r.to_dict() for r in results]}
    path.write_text(json.dumps(payload, indent=2))


def write_results(out: Path, results: Sequence[MethodResult], *, dataset: str, command: str) -> tuple[Path, ...]:
    """``results.json`` (with ``command``, the machine and every number), ``results.md`` and
    ``evaluation.png`` in ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "results.json", out / "results.md", out / "evaluation.png")
    write_json(paths[0], results, dataset=dataset, command=command)
    paths[1].write_text(markdown_report(results) + "\n")
    plot(paths[2], results)
    return paths


def plot(path: Path, results: Sequence[MethodResult]) -> None:
    """Left: mP@1 and mAP per method. Right: open-set curves (correct accepts vs false accepts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from muselens.core.metrics import open_set_curve

    with_open_set = [r for r in results if r.distractor_top1.size]
    fig, axes = plt.subplots(1, 2 if with_open_set else 1, figsize=(12 if with_open_set else 7, 4.5),
                             squeeze=False)
    ax = axes[0, 0]
    x = np.arange(len(results))
    ax.bar(x - 0.2, [100 * r.retrieval["mp_at_1"] for r in results], 0.4, label="mP@1")
    ax.bar(x + 0.2, [100 * r.retrieval["map"] for r in results], 0.4, label="mAP")
    ax.set_xticks(x, [r.name for r in results], rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.75, max(len(results), 3) - 0.25)
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.set_title("closed-set retrieval")
    ax.legend()
    if with_open_set:
        ax = axes[0, 1]
        for r in with_open_set:
            _, far, car = open_set_curve(r.query_top1, r.query_correct, r.distractor_top1)
            ax.plot(100 * far, 100 * car, label=r.name)
        for f in (1, 5):
            ax.axvline(f, color="grey", lw=0.6, ls=":")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, 100)
        ax.set_xlabel("false accepts: distractors taken for an artwork (%)")
        ax.set_ylabel("queries accepted with the right artwork (%)")
        ax.set_title("open set: threshold sweep")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

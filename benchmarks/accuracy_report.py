"""``bench accuracy``'s results for people: the table of methods by variant, the shipped-threshold
table, the proposed-vs-IM-GeM comparison, the plot, and the RESULTS.md section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from muselens.benchmarks import common
from muselens.benchmarks.served_table import served_table
from muselens.training.evaluation.results_report import (SHIPPED_COLUMNS, SHIPPED_TITLE, aligned, shipped_notes,
                                                         shipped_rows)

PROPOSED = "proposed"
PLOT = "accuracy.png"


def _metric(result: dict[str, Any] | None, key: str) -> float | None:
    return None if result is None else float(result["retrieval"][key])


def best_variant(row: Mapping[str, Any]) -> str | None:
    """The variant with the highest mP@1 (then mAP); None when nothing was measured."""
    scored = [(r["retrieval"]["mp_at_1"], r["retrieval"]["map"], -i, v)
              for i, (v, r) in enumerate(row["results"].items()) if r]
    return max(scored)[3] if scored else None  # ties: the variant listed first


def comparison(rows: Sequence[Mapping[str, Any]], variants: Sequence[str], a: str = PROPOSED,
               b: str = "IM-GeM") -> dict[str, Any]:
    """How much row ``a`` beats row ``b``, on the first variant (plain when measured) and on each's best."""
    by_label = {r["label"]: r for r in rows}
    missing = [label for label in (a, b) if label not in by_label]
    if missing:
        return {"a": a, "b": b, "missing": missing}
    variant = "plain" if "plain" in variants else variants[0]
    ra, rb = by_label[a]["results"][variant], by_label[b]["results"][variant]
    out: dict[str, Any] = {"a": a, "b": b, "variant": variant}
    for key in ("mp_at_1", "map"):
        out[key] = {"a": _metric(ra, key), "b": _metric(rb, key),
                    "points": 100 * (_metric(ra, key) - _metric(rb, key))}
    ba, bb = best_variant(by_label[a]), best_variant(by_label[b])
    out["best"] = {"a_variant": ba, "b_variant": bb,
                   "mp_at_1_points": 100 * (by_label[a]["results"][ba]["retrieval"]["mp_at_1"]
                                            - by_label[b]["results"][bb]["retrieval"]["mp_at_1"])}
    out["beats"] = out["mp_at_1"]["points"] > 0
    return out


def comparison_line(c: Mapping[str, Any]) -> str:
    if "missing" in c:
        return f"No {c['a']} vs {c['b']} comparison: no {' or '.join(c['missing'])} row was measured."
    p, m = c["mp_at_1"], c["map"]
    verdict = "beats" if c["beats"] else ("ties with" if p["points"] == 0 else "does not beat")
    return (f"**{c['a']} {verdict} {c['b']}** ({c['variant']}): mP@1 {100 * p['a']:.2f} vs {100 * p['b']:.2f} "
            f"({p['points']:+.2f} points), mAP {100 * m['a']:.2f} vs {100 * m['b']:.2f} ({m['points']:+.2f}); "
            f"best variants ({c['best']['a_variant']} vs {c['best']['b_variant']}): "
            f"{c['best']['mp_at_1_points']:+.2f} mP@1 points.")


def _cell(result: dict[str, Any] | None, key: str) -> str:
    return "N/A" if result is None else f"{100 * result['retrieval'][key]:.2f}"


def table_rows(data: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Table 5.3's layout: methods as rows, an mP@1 block then an mAP block, one column per variant."""
    variants = data["variants"]
    header = ["method"] + [f"mP@1 {v}" for v in variants] + [f"mAP {v}" for v in variants]
    body = []
    for row in data["rows"]:
        label = row["label"] + (" (default)" if row.get("default_variant") else "")
        body.append([label] + [_cell(row["results"][v], "mp_at_1") for v in variants]
                    + [_cell(row["results"][v], "map") for v in variants])
    return header, body


def text_table(data: Mapping[str, Any]) -> str:
    header, body = table_rows(data)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "-" * (sum(widths) + 2 * (len(widths) - 1)), *map(fmt, body)])


def _shipped_results(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"name": r["label"], "shipped": r["shipped"]} for r in data["rows"] if r.get("shipped")]


def shipped_table(data: Mapping[str, Any], *, markdown: bool = False) -> str:
    """Each row at its shipped threshold (with ``--unknown``): "" when none was measured."""
    results = _shipped_results(data)
    if not results:
        return ""
    rows = shipped_rows(results)
    if markdown:
        table = ["| " + " | ".join(SHIPPED_COLUMNS) + " |", "|" + "---|" * len(SHIPPED_COLUMNS),
                 *("| " + " | ".join(r) + " |" for r in rows), "", *(f"- {n}" for n in shipped_notes(results))]
        return "\n".join([SHIPPED_TITLE, "", *table])
    return "\n".join([SHIPPED_TITLE, aligned(SHIPPED_COLUMNS, rows), *shipped_notes(results)])


def variant_legend(data: Mapping[str, Any]) -> str:
    o = data["options"]
    return (f"Variants: plain; ia = instance-averaging, one mean descriptor per artwork (5.4.4); "
            f"qe = average query expansion with the top {o['qe']} (5.4.2); dba = database-side augmentation "
            f"with {o['dba']} neighbour(s) (5.4.3). N/A: SIFT scores pairs, it has no descriptor to expand. "
            "FT = the proposed run's fine-tuned last conv layer, GeM-pooled; '<loss> pooled' is the same "
            "layer of an alternative-loss run (paper 002's pooled layer), '<loss>' its region descriptor.")


def markdown(folder: Path, data: dict) -> str:
    header, body = table_rows(data)
    c = data["counts"]
    lines = [f"## {folder.name}", "", f"`{data['command']}`", "", common.machine_line(data["environment"]) + ".", "",
             f"Dataset `{data['dataset']}`: {c['references']} references of {c['artworks']} artworks, "
             f"{c['queries']} queries, {c['distractors']} distractors. Percentages.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
             *("| " + " | ".join(r) + " |" for r in body), "", variant_legend(data), "",
             *([shipped_table(data, markdown=True), ""] if shipped_table(data) else []),
             *([served_table(data["served"]), ""] if data.get("served") else []),
             comparison_line(data["comparison"]), ""]
    for alt in data.get("alternatives", []):
        how = f"trained now in {alt['wall_s']:.0f} s" if alt.get("trained_now") else "reused"
        lines.append(f"- stage-3 loss `{alt['loss']}`: run `{alt['run']}` ({how}).")
    for skipped in data.get("bundle", {}).get("skipped", []):
        lines.append(f"- bundle variant not measured: {skipped}.")
    if lines[-1] != "":
        lines.append("")
    if (folder / PLOT).exists():
        lines += [f"![{folder.name}](results/{folder.name}/{PLOT})", ""]
    return "\n".join(lines)


def plot(path: Path, data: Mapping[str, Any]) -> None:
    """mP@1 and mAP per method: the plain variant next to each method's best variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    first = "plain" if "plain" in data["variants"] else data["variants"][0]
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.75 * len(rows) + 3), 4.8), sharey=True)
    x = np.arange(len(rows))
    for ax, key, title in zip(axes, ("mp_at_1", "map"), ("mP@1", "mAP")):
        plain = [100 * (_metric(r["results"][first], key) or 0.0) for r in rows]
        best = [100 * (_metric(r["results"][best_variant(r)], key) or 0.0) if best_variant(r) else 0.0 for r in rows]
        ax.bar(x - 0.2, plain, 0.4, label=first)
        ax.bar(x + 0.2, best, 0.4, label="best variant (by mP@1)")
        ax.set_xticks(x, [r["label"] for r in rows], rotation=40, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_title(title)
        ax.grid(axis="y", lw=0.3)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

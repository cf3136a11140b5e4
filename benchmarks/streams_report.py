"""``bench streams``'s results for people: the targets and whether a run met them, the tables,
the RESULTS.md section and the curve of achieved FPS and p99 against the number of streams.

The targets (reported, never asserted): on 2 CPU cores, streaming p50 within 1.15x of bare ONNX
Runtime inference, >= 25 FPS for one stream at the default size, and with 4 cameras >= 1.1x the
answered frames of the server before pipelining (measured in the same run with ``--baseline``),
each stream's share within 20 % of the mean; on an H100, >= 64 concurrent 30-FPS streams with
p99 < 50 ms."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from muselens.benchmarks import common
from muselens.benchmarks.load import STAGES

CURVE_PLOT = "streams_curve.png"
SUSTAINED = 0.95  # a run keeps up when it answers at least this share of the frames offered
CPU_LATENCY_RATIO = 1.15
CPU_FPS = 25.0
GPU_STREAMS, GPU_FPS, GPU_P99_MS = 64, 30.0, 50.0
CAMERAS, CAMERAS_GAIN, FAIR_SPREAD = 4, 1.1, 0.2
NOT_JUDGED = "NOT JUDGED"  # a target the run cannot speak to (served at another size than the default)


# -- targets --------------------------------------------------------------------------------


def find_latency(results: Path, data: Mapping[str, Any]) -> tuple[str, dict] | None:
    """The newest latency bench.json beside this run, preferring the same bundle, then one that measured
    the bundle's own size on ort-cpu (what the CPU targets compare), then one not made after this run
    (a later bench of another bundle must not rewrite an older run's targets)."""
    name = data.get("server", {}).get("bundle", {}).get("name")
    created = data.get("environment", {}).get("created", "")
    found = []
    for path in sorted(results.glob("*/bench.json")):
        try:
            other = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if other.get("benchmark") == "latency":
            same = other.get("bundle", {}).get("name") == name
            usable = _latency_entry(other) is not None
            when = other.get("environment", {}).get("created", "")
            found.append((same, usable, not created or when <= created, when, path.parent.name, other))
    if not found:
        return None
    found.sort(key=lambda f: f[:4])
    return found[-1][4], found[-1][5]


def _latency_entry(latency: Mapping[str, Any], backend: str = "ort-cpu") -> dict | None:
    """The latency bench's result at the bundle's own short side (the size a server serves) on ``backend``."""
    size = latency.get("bundle", {}).get("short_side")
    return next((e for e in latency.get("results", []) if e["size"] == size and e["backend"] == backend), None)


def _breakdown(stages: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    return [{"stage": s, "p50": v["p50"], "p99": v["p99"]} for s, v in stages.items() if v.get("count")]


def evaluate_targets(data: Mapping[str, Any], latency: tuple[str, dict] | None) -> list[dict[str, Any]]:
    """Each target with its measured value, MET/MISSED, where the number came from, whether this
    machine is the one the target is for, and -- when missed -- the per-stage breakdown."""
    env = data.get("environment", {})
    gpus = env.get("gpus") or []
    on_cpu2 = env.get("cpus") == 2 and not gpus
    on_h100 = any("H100" in g for g in gpus)
    runs = data.get("runs", [])
    bare = data.get("bare", {})
    entry = _latency_entry(latency[1]) if latency else None
    targets = []

    # 1. CPU: streaming e2e p50 within 1.15x of bare ORT inference at the same size.
    t: dict[str, Any] = {"target": f"2 CPU cores: streaming end-to-end p50 <= {CPU_LATENCY_RATIO}x bare ONNX Runtime "
                                   "inference at the same size", "this_machine": on_cpu2}
    if entry and "stream" in entry["modes"]:
        stream = entry["modes"]["stream"]["stages"]
        base = entry["modes"]["stream"].get("ratio_base_ms", entry["bare"]["stages"]["inference"]["p50"])
        ratio = stream["e2e"]["p50"] / base
        beside = " timed beside its frames" if "bare_beside" in entry["modes"]["stream"] else ""
        t.update(value=ratio, measured=f"{ratio:.2f}x ({stream['e2e']['p50']:.1f} ms vs {base:.1f} ms{beside})",
                 source=f"latency bench {latency[0]}, closed-loop stream at short side {entry['size']}",
                 breakdown=_breakdown({k: v for k, v in stream.items() if k != "e2e"}))
    else:
        one = next((r for r in runs if r["streams"] == 1 and r["latency_ms"].get("count")), None)
        if one and bare.get("count"):
            ratio = one["latency_ms"]["p50"] / bare["p50"]
            t.update(value=ratio, measured=f"{ratio:.2f}x ({one['latency_ms']['p50']:.1f} ms vs {bare['p50']:.1f} ms)",
                     source=f"this run, 1 stream at {one['offered_fps_per_stream']:g} fps (open loop)",
                     breakdown=_breakdown(one["stages_ms"]))
        else:
            t.update(value=None, measured="not measured (needs a 1-stream run and a bare baseline, or a latency "
                                          "bench beside this one)", source="-")
    t["verdict"] = "MET" if t["value"] is not None and t["value"] <= CPU_LATENCY_RATIO else "MISSED"
    targets.append(t)

    # 2. CPU: >= 25 FPS for one stream at the default size: a camera sending faster than that
    # (open loop, this run) where there is one, else the latency bench's closed-loop stream.
    t = {"target": f"2 CPU cores: >= {CPU_FPS:g} FPS for one stream at the default size", "this_machine": on_cpu2}
    one = next((r for r in runs if r["streams"] == 1 and r["offered_fps_per_stream"] >= CPU_FPS), None)
    if one is not None:
        value = one["achieved_fps_total"]
        t.update(value=value, measured=f"{value:.1f} FPS answered of {one['offered_fps_total']:g} offered",
                 source="this run, 1 stream (open loop)", breakdown=_breakdown(one["stages_ms"]))
    elif entry and "stream" in entry["modes"]:
        value = entry["modes"]["stream"]["fps"]
        t.update(value=value, measured=f"{value:.1f} FPS",
                 source=f"latency bench {latency[0]}, closed-loop stream at short side {entry['size']}",
                 breakdown=_breakdown({k: v for k, v in entry["modes"]["stream"]["stages"].items() if k != "e2e"}))
    elif runs:
        best = max(runs, key=lambda r: r["achieved_fps_total"])
        value = best["achieved_fps_total"]
        t.update(value=value, measured=f"{value:.1f} FPS total with {best['streams']} stream(s) "
                                       f"(offered {best['offered_fps_total']:g})",
                 source="this run, best N", breakdown=_breakdown(best["stages_ms"]))
    else:
        t.update(value=None, measured="not measured", source="-")
    t["verdict"] = "MET" if t["value"] is not None and t["value"] >= CPU_FPS else "MISSED"
    targets.append(t)

    # 3. CPU: 4 cameras, >= 1.1x the answered frames of the server before pipelining, fair shares.
    t = {"target": f"2 CPU cores: {CAMERAS} cameras answered >= {CAMERAS_GAIN:g}x the frames of the server before "
                   f"pipelining (same run), each stream within {FAIR_SPREAD:.0%} of the mean",
         "this_machine": on_cpu2}
    four = next((r for r in runs if r["streams"] == CAMERAS), None)
    before = next((r for r in data.get("baseline", {}).get("runs", []) if r["streams"] == CAMERAS), None)
    if four is not None and before is not None and before["achieved_fps_total"] > 0:
        gain = four["achieved_fps_total"] / before["achieved_fps_total"]
        spread = four.get("share_spread", 1.0)
        t.update(value=(gain, spread), measured=f"{four['achieved_fps_total']:.1f} FPS against "
                                               f"{before['achieved_fps_total']:.1f} ({gain:.2f}x); shares within "
                                               f"{spread:.0%} of the mean",
                 source="this run and its --baseline server", breakdown=_breakdown(four["stages_ms"]))
        t["verdict"] = "MET" if gain >= CAMERAS_GAIN and spread <= FAIR_SPREAD else "MISSED"
    else:
        t.update(value=None, measured=f"not measured (needs {CAMERAS} streams, with --baseline)", source="-",
                 verdict="MISSED")
    targets.append(t)

    # 4. H100: >= 64 concurrent 30-FPS streams with p99 < 50 ms.
    t = {"target": f"H100: >= {GPU_STREAMS} concurrent {GPU_FPS:g}-FPS streams with p99 < {GPU_P99_MS:g} ms",
         "this_machine": on_h100}
    at_rate = [r for r in runs if r["offered_fps_per_stream"] >= GPU_FPS]
    good = [r for r in at_rate if r["achieved_fps_total"] >= SUSTAINED * r["offered_fps_total"]
            and r["latency_ms"].get("count") and r["latency_ms"]["p99"] < GPU_P99_MS]
    if not at_rate:
        t.update(value=None, measured=f"not measured at >= {GPU_FPS:g} fps per stream", source="-")
    else:
        best = max(good, key=lambda r: r["streams"]) if good else None
        worst = max(at_rate, key=lambda r: r["streams"])
        t.update(value=best["streams"] if best else 0,
                 measured=(f"{best['streams']} streams sustained (p99 {best['latency_ms']['p99']:.1f} ms)" if best
                           else "no N sustained") + f"; tried N up to {worst['streams']}",
                 source=f"this run (sustained = >= {SUSTAINED:.0%} of offered frames answered)",
                 breakdown=_breakdown(worst["stages_ms"]))
    t["verdict"] = "MET" if t["value"] is not None and t["value"] >= GPU_STREAMS else "MISSED"
    targets.append(t)
    size = data.get("settings", {}).get("short_side")
    if size is not None:  # served at another size than the bundle's (--short-side): the CPU targets are not its
        for t in targets[:3]:
            t.update(verdict=NOT_JUDGED, value=None, breakdown=None, source="-",
                     measured=f"not judged: this run served short side {size}, the targets are for the bundle's own")
    return targets


# -- reporting ------------------------------------------------------------------------------


def _cpu(run: Mapping[str, Any]) -> str:
    c = run["server_cpu"]
    return "n/a" if "unavailable" in c else f"{c['percent_of_one_core']:.0f}% ({c['percent_of_all_cores']:.0f}% of all)"


def _gpu(run: Mapping[str, Any]) -> str:
    g = run["gpu"]
    return "n/a" if "unavailable" in g else f"{g['util_percent_mean']:.0f}% (max {g['util_percent_max']:.0f}%)"


def table(data: Mapping[str, Any]) -> list[str]:
    """One row per N (and per N of the --baseline server, with this server's gain over it)."""
    baseline = {r["streams"]: r for r in data.get("baseline", {}).get("runs", [])}
    rows = ["| server | streams | offered FPS | achieved FPS total | vs baseline | per stream min / mean / max | "
            "share spread | e2e ms p50 / p99 | unanswered (rate) | server-dropped | errors / failed streams | "
            "server CPU (of one core) | GPU util |",
            "|" + "---|" * 13]
    for label, runs in (("this", data["runs"]), ("baseline", list(baseline.values()))):
        for r in runs:
            lat = r["latency_ms"]
            latency = f"{lat['p50']:.1f} / {lat['p99']:.1f}" if lat.get("count") else "-"
            per = r["achieved_fps_per_stream"]
            before = baseline.get(r["streams"]) if label == "this" else None
            gain = f"{r['achieved_fps_total'] / before['achieved_fps_total']:.2f}x" \
                if before and before["achieved_fps_total"] > 0 else "-"
            spread = f"{r['share_spread']:.0%}" if "share_spread" in r else "-"
            rows.append(f"| {label} | {r['streams']} | {r['offered_fps_total']:g} | {r['achieved_fps_total']:.1f} | "
                        f"{gain} | {per['min']:.1f} / {per['mean']:.1f} / {per.get('max', per['mean']):.1f} | "
                        f"{spread} | {latency} | {r['unanswered_measured']} ({r['drop_rate']:.0%}) | "
                        f"{r['server_dropped_total']} | {r['errors']} / {len(r['failures'])} | {_cpu(r)} | {_gpu(r)} |")
    return rows


def stage_table(data: Mapping[str, Any]) -> list[str]:
    """Per server and N, the server-reported stage p50 / p99 (ms) of the measured answers."""
    stages = [s for s in STAGES if s != "heatmap"]
    rows = ["| server | streams | " + " | ".join(stages) + " |", "|" + "---|" * (len(stages) + 2)]
    for label, runs in (("this", data["runs"]), ("baseline", data.get("baseline", {}).get("runs", []))):
        for r in runs:
            cells = [f"{r['stages_ms'][s]['p50']:.1f} / {r['stages_ms'][s]['p99']:.1f}"
                     if r["stages_ms"].get(s, {}).get("count") else "-" for s in stages]
            rows.append(f"| {label} | {r['streams']} | " + " | ".join(cells) + " |")
    return rows


def markdown(folder: Path, data: dict) -> str:
    s, server = data["settings"], data["server"]
    b = server.get("bundle", {})
    where = f"server `{server['command']}`" if server.get("started_here") else f"server at {server.get('address')}"
    bare = data.get("bare", {})
    bare_line = (f"Bare {bare['backend']} inference{' of ' + bare['variant'] if bare.get('variant') else ''} at short side {bare['short_side']} "
                 f"({', '.join(f'{h}x{w}' for h, w in bare['input_hw'])}), measured {bare['where']} before the run: "
                 f"p50 {bare['p50']:.1f} ms, p99 {bare['p99']:.1f} ms." if bare.get("count")
                 else f"Bare inference: {bare.get('unavailable', 'not measured')}.")
    base = data.get("baseline")
    base_line = [f"Baseline: {base['what']}; `{base['server'].get('command')}`, variant "
                 f"{base['server'].get('bundle', {}).get('variant')}.", ""] if base else []
    choice = b.get("variant_choice")
    lines = [f"## {folder.name}", "", f"`{data['command']}`", "", common.machine_line(data["environment"]) + ".", "",
             f"Bundle `{b.get('name')}` {b.get('bundle_version')} ({b.get('backbone')}, {b.get('variant')}, "
             f"{b.get('backend')}); {where}. Each camera: its own connection and stream, {s['fps']:g} fps open loop, "
             f"{s['warmup_s']:g} s warm-up then {s['duration_s']:g} s measured; frames: {s['frame_source']}.", "",
             *([f"The server's choice: {choice}.", ""] if choice else []), *base_line,
             bare_line, "", *table(data), "",
             "Share spread = the largest distance of one stream's answered FPS from the streams' mean, as a share "
             "of the mean.", "",
             "Unanswered = frames sent in the measured window that got no answer (latest frame wins dropped "
             "them); server-dropped = the server's `dropped_frames` count over the whole run.", "",
             "Server stage timings, p50 / p99 ms:", "", *stage_table(data), ""]
    failures = [f"- {r['streams']} streams: {f}" for r in data["runs"] for f in r["failures"]]
    if failures:
        lines += ["Streams that failed:", "", *failures, ""]
    if (folder / CURVE_PLOT).exists():
        lines += [f"![{folder.name} achieved FPS and p99 against streams](results/{folder.name}/{CURVE_PLOT})", ""]
    latency = find_latency(folder.parent, data)
    lines += ["### Targets", ""]
    for t in evaluate_targets(data, latency):
        note = "" if t["this_machine"] else " (this machine is not the one the target is for)"
        lines.append(f"- **{t['verdict']}**{note}: {t['target']}. Measured: {t['measured']}; source: {t['source']}.")
        if t["verdict"] == "MISSED" and t.get("breakdown"):
            lines += ["", "  | stage | p50 ms | p99 ms |", "  |---|---|---|"]
            lines += [f"  | {row['stage']} | {row['p50']:.1f} | {row['p99']:.1f} |" for row in t["breakdown"]]
            lines.append("")
    lines.append("")
    return "\n".join(lines)


def plot_curve(data: Mapping[str, Any], path: Path) -> None:
    """Achieved total FPS (and the offered load) and e2e p50/p99 against the number of streams."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["runs"]
    n = [r["streams"] for r in runs]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(n, [r["achieved_fps_total"] for r in runs], "o-", color="tab:blue", label="achieved FPS (total)")
    ax.plot(n, [r["offered_fps_total"] for r in runs], "--", color="tab:blue", alpha=0.5, label="offered FPS")
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("frames per second", color="tab:blue")
    if len(n) > 1 and max(n) / min(n) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(n, [str(v) for v in n])
    right = ax.twinx()
    p99 = [r["latency_ms"].get("p99", float("nan")) for r in runs]
    p50 = [r["latency_ms"].get("p50", float("nan")) for r in runs]
    right.plot(n, p99, "s-", color="tab:red", label="e2e p99")
    right.plot(n, p50, "^:", color="tab:red", alpha=0.6, label="e2e p50")
    right.set_ylabel("end-to-end ms", color="tab:red")
    right.set_ylim(bottom=0)
    ax.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8, loc="upper left")
    ax.set_title(f"{data['settings']['fps']:g} fps per stream")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""``muselens demo``: the README's main job, end to end on an embedded default museum.

1. make a seeded synthetic museum and check it;
2. retrain the thesis method on it (a short schedule that finishes in minutes on 2 CPU cores;
   ``--schedule full`` runs the paper's on a GPU);
3. measure SIFT, IM-GeM, FT and the proposed method on the museum's queries;
4. export the bundle;
5. make a visitor's walk along the walls (artworks, bare walls, passers-by) with ground truth;
6. start ``muselens serve`` on the bundle and stream the walk through it like a phone would,
   printing the smoothed answer and its latency live;
7. write ``report.html`` (opens without a network): the results table, the training curves,
   the latency histogram, and a strip of walk frames with heatmap overlays and labels.

Every step reuses what an earlier run already built with the same settings.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muselens.training.schedules import SCHEDULES

# The embedded default: small enough to train in minutes on 2 CPU cores, hard enough that
# training visibly matters.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "museum": {"instances": 20, "references": 4, "queries": 2, "distractors": 30, "seed": 0, "size": 640},
        "walk": {"seconds": 30.0, "fps": 10.0, "size": (640, 360)},
        "stream_fps": 10.0,
    },
    # What the test suite runs: the same pipeline on a toy museum, in well under a minute.
    "tiny": {
        "museum": {"instances": 3, "references": 2, "queries": 1, "distractors": 2, "seed": 0, "size": 160},
        "walk": {"seconds": 8.0, "fps": 3.0, "size": (192, 108)},
        "stream_fps": 8.0,
    },
}
BASELINES = ("sift", "im-gem")
DEMO_TARGET_FAR = 0.05
STRIP_FRAMES = 12
OTHER_OUTLINE_RGB = (200, 200, 200)  # a fitted artwork beside the one in view
REUSED: list[str] = []  # steps this run took from an earlier one, for the report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="where everything goes")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="museum and walk size (tiny: what the tests run)")
    parser.add_argument("--schedule", choices=sorted(SCHEDULES), default=None,
                        help="training schedule (default: short; tiny with --preset tiny; full: the paper's, for a GPU)")
    parser.add_argument("--device", default="cpu", help="training device: cpu or cuda")
    parser.add_argument("--no-pretrained", action="store_true", help="start from random weights (tests)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _step(n: int, text: str) -> None:
    print(f"\n[{n}/7] {text}", file=sys.stderr, flush=True)


@dataclass
class Paths:
    out: Path

    @property
    def museum(self) -> Path: return self.out / "museum"
    @property
    def config(self) -> Path: return self.out / "train-config.json"  # the settings of the finished run
    @property
    def run(self) -> Path: return self.out / "run"
    @property
    def evaluation(self) -> Path: return self.out / "evaluation"
    @property
    def bundle(self) -> Path: return self.out / "bundle"
    @property
    def walk(self) -> Path: return self.out / "walk"
    @property
    def stream(self) -> Path: return self.out / "stream.json"
    @property
    def report(self) -> Path: return self.out / "report.html"


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    REUSED.clear()
    preset = PRESETS[args.preset]
    schedule_name = args.schedule or ("tiny" if args.preset == "tiny" else "short")
    paths = Paths(args.out)
    progress = not args.no_progress

    _step(1, f"synthetic museum -> {paths.museum}")
    build_museum(paths.museum, preset["museum"], progress)

    _step(2, f"training ({schedule_name} schedule, {args.device}) -> {paths.run}")
    trained_now = train(paths, schedule_name, args)

    _step(3, "measuring SIFT, IM-GeM, FT and the proposed method on the queries")
    evaluate(paths, trained_now, progress)

    _step(4, f"exporting the bundle -> {paths.bundle}")
    export(paths, trained_now)

    _step(5, f"a visitor's walk -> {paths.walk}")
    walk = make_walk(paths, preset["walk"], preset["museum"]["seed"], progress)

    _step(6, "serving the bundle and streaming the walk through it")
    stream = stream_walk(paths, walk, preset["stream_fps"])

    _step(7, f"report -> {paths.report}")
    write_report(paths, walk, stream, time.perf_counter() - started, REUSED)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; open {paths.report}", file=sys.stderr)
    return 0


# -- 1. museum -------------------------------------------------------------------------------


def build_museum(museum: Path, params: dict[str, Any], progress: bool) -> None:
    from muselens.core.data.dataset_report import check_dataset, format_report
    from muselens.core.data.museum_dataset import MuseumDataset
    from muselens.core.synthetic import make_museum

    if _same_json(museum / "museum.json", params):
        print("  already built with these settings: reused", file=sys.stderr)
        REUSED.append("museum")
    else:
        make_museum(museum, **params, progress=progress, overwrite=True)
    report = check_dataset(MuseumDataset.load(museum), progress=False)
    print(format_report(report))
    if not report.usable:
        raise SystemExit("demo: the synthetic museum is not usable (see the report above)")


# -- 2-4. train, evaluate, export ----------------------------------------------------------------


def train(paths: Paths, schedule_name: str, args: argparse.Namespace) -> bool:
    """Train unless a finished run with the same schedule exists; True when it trained now."""
    wanted = {"schedule": SCHEDULES[schedule_name], "pretrained": not args.no_pretrained}
    if (paths.run / "model.pt").exists() and _same_json(paths.config, wanted):
        print("  a finished run with this schedule exists: reused", file=sys.stderr)
        REUSED.append("training")
        return False
    from muselens.training.run import TrainingRun
    from muselens.training.schedules import schedule_config

    if paths.run.exists():
        shutil.rmtree(paths.run)
    paths.out.mkdir(parents=True, exist_ok=True)
    TrainingRun(paths.museum, paths.run, schedule_config(schedule_name), device=args.device,
                pretrained=not args.no_pretrained, progress=not args.no_progress).run()
    paths.config.write_text(json.dumps(wanted, indent=2))
    return True


def evaluate(paths: Paths, trained_now: bool, progress: bool) -> None:
    results = paths.evaluation / "results.json"
    if results.exists() and not trained_now:
        print("  results for this run exist: reused", file=sys.stderr)
        REUSED.append("evaluation")
        return
    from muselens.core.data.museum_dataset import MuseumDataset
    from muselens.training.evaluation.protocol import EvalOptions, evaluate_methods
    from muselens.training.evaluation.results_report import text_report, write_results

    methods = (*BASELINES, "ft", "proposed")
    # What `muselens evaluate` would be told to measure the same, recorded in results.json.
    argv = ["evaluate", str(paths.museum), "--method", ",".join(methods),
            "--run", str(paths.run), "--out", str(paths.evaluation), "--no-clustering", "--workers", "2"]
    if not progress:
        argv.append("--no-progress")
    results = evaluate_methods(MuseumDataset.load(paths.museum), methods, EvalOptions(clustering=False),
                               progress=progress, run=paths.run, workers=2)
    written = write_results(paths.evaluation, results, dataset=str(paths.museum),
                            command="muselens " + shlex.join(argv))
    print(text_report(results))
    skipped = sum(r.counts["skipped"] for r in results)
    if skipped:
        print(f"\n{skipped} unreadable images were skipped: see {written[0]}")
    print(f"\nwrote {', '.join(str(p) for p in written)}")


def export(paths: Paths, trained_now: bool) -> None:
    if (paths.bundle / "manifest.json").exists() and not trained_now:
        print("  the bundle of this run exists: reused", file=sys.stderr)
        REUSED.append("bundle")
        return
    from muselens.export.bundle import ExportOptions, export_bundle
    from muselens.export.export_report import summary, write_results_json

    # 5 % FAR: the demo museum has 30 distractor photos, so a 1 % target would be their maximum score.
    options = ExportOptions(precisions=("fp32",), latency_runs=5, target_far=DEMO_TARGET_FAR, name="demo-museum")
    result = export_bundle(paths.run, paths.bundle, options=options)
    print(summary(result))
    # What `muselens export` would be told to build the same, recorded in export.json.
    argv = ["export", str(paths.run), "--out", str(paths.bundle), "--precision", "fp32", "--latency-runs", "5",
            "--target-far", str(DEMO_TARGET_FAR), "--name", "demo-museum",
            "--results-json", str(paths.out / "export.json")]
    write_results_json(paths.out / "export.json", result, "muselens " + " ".join(argv))
    print(f"results {paths.out / 'export.json'}")


# -- 5. the walk -----------------------------------------------------------------------------


def make_walk(paths: Paths, params: dict[str, Any], seed: int, progress: bool) -> dict[str, Any]:
    from muselens.core.synthetic.walk import make_walk as build

    wanted = {**params, "size": list(params["size"]), "seed": seed}
    stamp = paths.walk / "demo-walk.json"
    if (paths.walk / "walk.json").exists() and _same_json(stamp, wanted):
        print("  already made with these settings: reused", file=sys.stderr)
        REUSED.append("walk")
    else:
        if paths.walk.exists():
            shutil.rmtree(paths.walk)
        build(paths.museum, paths.walk, seed=seed, seconds=params["seconds"], fps=params["fps"],
              size=tuple(params["size"]), progress=progress)
        stamp.write_text(json.dumps(wanted))
    return json.loads((paths.walk / "walk.json").read_text())


# -- 6. serve and stream ---------------------------------------------------------------------


def stream_walk(paths: Paths, walk: dict[str, Any], fps: float) -> dict[str, Any]:
    """Stream the walk's frames at ``fps`` and collect every answer with its latency."""
    from muselens.runtime.client import MuselensClient, frame_message
    from muselens.v1 import recognition_pb2 as pb

    frames = walk["frames"]
    truth = {f"{f['index']:06d}": f.get("in_view") for f in frames}
    sent: dict[str, float] = {}
    options = pb.RecognizeOptions(top_k=3, explain=True, heatmap_kinds=[pb.HEATMAP_KIND_REGIONS])

    def requests():
        start = time.perf_counter()
        for i, f in enumerate(frames):
            delay = start + i / fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            frame_id = f"{f['index']:06d}"
            image = (paths.walk / "frames" / f"{frame_id}.jpg").read_bytes()
            sent[frame_id] = time.perf_counter()
            yield frame_message(image, frame_id=frame_id, timestamp=f["time_s"], options=options)

    from muselens.runtime.server.process import ServerProcess

    server = ServerProcess(paths.bundle, log=paths.out / "server.log").start()
    print(f"  serving {paths.bundle} on {server.address} (log: {paths.out / 'server.log'})", file=sys.stderr)
    rows = []
    verifications: dict[str, dict[str, Any]] = {}  # frame id -> what background verification found of it
    try:
        with MuselensClient(server.address) as client:
            client.wait_ready(30)
            info = client.bundle_info()
            for r in client.stream(requests()):
                e2e = (time.perf_counter() - sent[r.frame_id]) * 1e3
                shown = r.smoothed.instance_id if r.smoothed.decision == pb.DECISION_ARTWORK else None
                expected = truth.get(r.frame_id)
                heat = next((h for h in r.heatmaps if h.side == pb.HEATMAP_SIDE_QUERY), None)
                v = r.verification
                verified = v.state == pb.VERIFICATION_STATE_VERIFIED
                if v.frame_id and v.frame_id not in verifications:  # first reported: how long it took to follow
                    verifications[v.frame_id] = {
                        "instance_id": v.instance_id if verified else None, "inliers": v.inliers,
                        "age_ms": v.age_ms, "verify_ms": v.verify_ms, "truth": truth.get(v.frame_id),
                        "outline": [[p.x, p.y] for p in v.outline] if verified else None}
                rows.append({
                    "frame_id": r.frame_id, "e2e_ms": e2e, "server_ms": r.timings.total_ms,
                    "inference_ms": r.timings.inference_ms, "decision": pb.Decision.Name(r.decision),
                    "top1": r.matches[0].instance_id if r.matches else None,
                    "top1_score": r.matches[0].score if r.matches else None,
                    "shown": shown, "shown_title": r.smoothed.title, "smoothed": pb.Decision.Name(r.smoothed.decision),
                    "truth": expected, "dropped": r.dropped_frames,
                    "verified": v.instance_id if verified else None, "verified_frame": v.frame_id or None,
                    # fitted artworks carried into this frame by the camera's motion
                    "in_view": [{"instance_id": t.instance_id, "at_centre": t.at_centre, "age_ms": t.age_ms,
                                 "outline": [[p.x, p.y] for p in t.outline]} for t in v.in_view],
                    "heatmap": {"h": heat.height, "w": heat.width, "values": list(heat.values)} if heat else None,
                })
                label = r.smoothed.title or pb.Decision.Name(r.smoothed.decision).removeprefix("DECISION_").lower()
                print(f"  frame {r.frame_id}  shown: {label:<28} truth: {str(expected):<6} "
                      f"{e2e:6.1f} ms end to end ({r.timings.inference_ms:.1f} ms inference), "
                      f"dropped {r.dropped_frames}", flush=True)
    finally:
        server.stop()
    summary = stream_summary(rows, len(frames), info, verifications)
    paths.stream.write_text(json.dumps({"summary": summary, "verifications": verifications, "frames": [
        {k: v for k, v in row.items() if k != "heatmap"} for row in rows]}, indent=2))
    print(f"  {summary['answered']} of {summary['sent']} frames answered, end-to-end p50 "
          f"{summary['e2e_ms']['p50']:.1f} ms; shown answer right on {100 * summary['shown_correct']:.0f} % "
          f"of answered frames", file=sys.stderr)
    return {"summary": summary, "rows": rows, "verifications": verifications}


def stream_summary(rows: list[dict[str, Any]], sent: int, info,
                   verifications: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    from muselens.benchmarks.common import percentiles

    with_art = [r for r in rows if r["truth"]]
    checked = list((verifications or {}).values())
    return {
        "verified_frames": sum(v["instance_id"] is not None for v in checked),
        "verified_right": sum(v["instance_id"] is not None and v["instance_id"] == v["truth"] for v in checked),
        "verifications": len(checked),
        # frames on which an outline carried by the camera's motion held the centre, and named the truth
        "carried_frames": sum(any(t["at_centre"] for t in r.get("in_view") or ()) for r in rows),
        "carried_right": sum(any(t["at_centre"] and t["instance_id"] == r["truth"] for t in r.get("in_view") or ())
                             for r in rows),
        "verification_age_ms": percentiles(v["age_ms"] for v in checked),
        "sent": sent, "answered": len(rows), "dropped": rows[-1]["dropped"] if rows else 0,
        "e2e_ms": percentiles(r["e2e_ms"] for r in rows),
        "server_ms": percentiles(r["server_ms"] for r in rows),
        "inference_ms": percentiles(r["inference_ms"] for r in rows),
        "shown_correct": sum(r["shown"] == r["truth"] for r in rows) / max(len(rows), 1),
        "top1_correct_in_view": sum(r["top1"] == r["truth"] for r in with_art) / max(len(with_art), 1),
        "frames_with_artwork": len(with_art),
        "bundle": {"name": info.name, "version": info.bundle_version, "backend": info.backend,
                   "threshold": info.threshold},
    }


# -- 7. the report ---------------------------------------------------------------------------


def write_report(paths: Paths, walk: dict[str, Any], stream: dict[str, Any], seconds: float,
                 reused: list[str]) -> Path:
    from muselens.demo_report import Report, code, image_tag, paragraph, table

    note = f" (reused from an earlier run: {', '.join(reused)})" if reused else ""
    report = Report("muselens demo", f"a synthetic museum, {seconds:.0f} s end to end on this machine{note}")
    results = json.loads((paths.evaluation / "results.json").read_text())
    rows = [{"method": r["name"], "mP@1 %": 100 * r["retrieval"]["mp_at_1"], "mAP %": 100 * r["retrieval"]["map"],
             "Recall@5 %": 100 * r["retrieval"]["recall_at_k"].get("5", float("nan")),
             "AUROC (artwork vs distractor)": r.get("open_set", {}).get("auroc")} for r in results["results"]]
    report.add("The museum's results", paragraph(
        "Retrieval of each query photo among the museum's reference photos (the thesis' Table 5.3 "
        "protocol): the first answer's precision (mP@1) and mean average precision."),
        table(rows), code(results["command"]))
    if (paths.run / "curves.png").exists():
        report.add("Training curves", image_tag(paths.run / "curves.png", "training curves"))
    s = stream["summary"]
    latency_png = paths.out / "latency.png"
    plot_latency(stream["rows"], latency_png)
    report.add("Streaming the walk", paragraph(
        f"{s['answered']} of {s['sent']} camera frames answered over one gRPC stream "
        f"({s['dropped']} stale frames dropped by the server to stay current); the shown (smoothed) "
        f"answer matched the ground truth on {100 * s['shown_correct']:.0f} % of the answered frames, "
        f"the raw top-1 on {100 * s['top1_correct_in_view']:.0f} % of the {s['frames_with_artwork']} "
        f"frames with an artwork in view. End to end p50 {s['e2e_ms']['p50']:.1f} ms, p99 "
        f"{s['e2e_ms']['p99']:.1f} ms (server {s['server_ms']['p50']:.1f} ms, inference "
        f"{s['inference_ms']['p50']:.1f} ms). Served by {s['bundle']['backend']}. "
        f"Beside the stream, {s['verifications']} frames were verified geometrically in the background "
        f"({s['verified_frames']} fitted an artwork's reference, {s['verified_right']} of them the right one); "
        f"a verification reached the stream {_ms(s['verification_age_ms'], 'p50')} ms after its frame arrived "
        f"(p95 {_ms(s['verification_age_ms'], 'p95')} ms). Carried into later frames by the camera's motion, "
        f"a fitted outline held the centre of {s.get('carried_frames', 0)} frames, naming the artwork in view on "
        f"{s.get('carried_right', 0)} of them."),
        image_tag(latency_png, "latency histogram"))
    report.add_strip("Frames of the walk, with what lit up the match",
                     strip_frames(paths, stream["rows"], stream.get("verifications", {})),
                     "Overlay: the k regions of the frame's region descriptor, each coloured by its share of the "
                     "similarity with the best-matching artwork (red adds, blue subtracts; the regions sum "
                     "exactly to the score: paper 001 on our region descriptor). Outlines: where background "
                     "verification fitted an artwork's reference (the reference's corners through the "
                     "homography), carried into this frame by the camera's motion since; green the one at the "
                     "centre, which the stream shows, grey its neighbours. Correct means the shown "
                     "answer named the artwork in view, or named none in front of a bare wall.")
    return report.write(paths.report)


def _ms(stats: dict[str, float], key: str) -> str:
    return f"{stats[key]:.0f}" if key in stats else "–"


def strip_frames(paths: Paths, rows: list[dict[str, Any]], verifications: dict[str, dict[str, Any]]) -> list:
    """Evenly spaced frames of the walk, each moved to one with an outline within 3 when there is one."""
    import numpy as np

    from muselens.demo_report import StripFrame
    from muselens.core.data.images import encode_jpeg, read_image
    from muselens.runtime.explain import heatmap_overlay, outline_overlay

    if not rows:
        return []
    titles = {label["id"]: label["title"] for label in json.loads((paths.bundle / "labels.json").read_text())}
    def outlines(row: dict[str, Any]) -> list[tuple[Any, bool]]:
        """(outline, at the centre) of the artworks carried into the frame, else its own verification's."""
        carried = [(t["outline"], t["at_centre"]) for t in row.get("in_view") or ()]
        own = (verifications.get(row["frame_id"]) or {}).get("outline")
        return carried or ([(own, True)] if own else [])

    outlined = [i for i, row in enumerate(rows) if outlines(row)]
    picks = []
    for i in sorted({round(i * (len(rows) - 1) / max(STRIP_FRAMES - 1, 1)) for i in range(STRIP_FRAMES)}):
        near = min(outlined, key=lambda j: abs(j - i), default=None)
        picks.append(near if near is not None and abs(near - i) <= 3 and near not in picks else i)
    out = []
    for i in sorted(set(picks)):
        row = rows[i]
        image = read_image(paths.walk / "frames" / f"{row['frame_id']}.jpg")
        if row["heatmap"] is not None and row["top1"] is not None:
            heat = np.asarray(row["heatmap"]["values"], np.float32).reshape(row["heatmap"]["h"], row["heatmap"]["w"])
            image = heatmap_overlay(image, heat, alpha=0.45)
        for outline, at_centre in outlines(row):  # the one shown in green, the others in grey
            image = outline_overlay(image, np.asarray(outline), **({} if at_centre else {"colour": OTHER_OUTLINE_RGB}))
        answer = row["shown_title"] or row["smoothed"].removeprefix("DECISION_").replace("_", " ").lower()
        truth = titles.get(row["truth"], row["truth"]) if row["truth"] else "no artwork"
        out.append(StripFrame(encode_jpeg(image, 80), row["frame_id"], answer, truth,
                              row["shown"] == row["truth"], row["e2e_ms"]))
    return out


def plot_latency(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for key, label in (("e2e_ms", "end to end (client)"), ("server_ms", "server"), ("inference_ms", "inference")):
        values = [r[key] for r in rows]
        if values:
            ax.hist(values, bins=30, alpha=0.55, label=label)
    ax.set_xlabel("milliseconds per frame")
    ax.set_ylabel("frames")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _same_json(path: Path, wanted: dict[str, Any]) -> bool:
    """True when ``path`` holds JSON whose keys in ``wanted`` have exactly these values."""
    if not path.exists():
        return False
    try:
        written = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    normal = json.loads(json.dumps(wanted))
    return all(written.get(k) == v for k, v in normal.items())

"""``muselens bench inference-settings``: ONNX Runtime's settings measured, not guessed.

For one bundle, every ONNX variant it holds (fp32, fp16, int8) at its recognition size and at
each ``--sizes`` short side, under each setting a server could use: the graph optimisation
level, the intra-op thread count, whether those threads spin between parallel sections, and
where activations live (the shared arena muselens uses, the session's own, none). Each row is
the median of ``--runs`` inferences of a camera-shaped frame (16:9) on the engine alone, and
its ratio to the default (what ``muselens serve`` runs: fp32 at the bundle's size, ORT's
defaults and the shared arena), measured in the same run.

``--data`` adds accuracy as the service would have it: every variant at every size describes the
museum's queries (a real set of ``../shared/datasets``), which are searched in the bundle's own
gallery (its references described by fp32 at the bundle's size, whatever is served), and it
reports mP@1, mAP, and the drift from fp32 at the bundle's size: mP@1 points lost and the
agreement of each query's descriptor and top-1 with fp32's. That is the drift ``muselens serve
--variant auto`` bounds and ``--short-side`` costs, measured on real photos.

``--camera-jpeg LONG`` (with ``--data``) adds the drift of reduced JPEG decoding: each query is
re-encoded as a camera would send it (long side LONG, JPEG quality 90), then described by fp32 at
the bundle's size twice, decoded in full and decoded at the smallest n/8 scale that holds the
recognition size (what ``muselens serve`` does unless ``--reduced-decode off``), each brought to
that size by the contract's resize. Reported: both mP@1, and the reduced path's descriptor cosine
and top-1 agreement with the full one.

``--concurrent`` adds the question a server with several cameras asks: with N inferences in
flight at once, each on T threads, how many frames a second does the box answer in total?
(On 2 cores: one inference on 2 threads against two on 1 thread each.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from muselens.benchmarks import common
from muselens.benchmarks.load import csv_ints
from muselens.runtime.recognition.variant_choice import camera_frame, timed_runs

# (label, OrtBackend settings): each changes one thing from the default
SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("default", {}),
    ("threads 1", {"threads": 1}),
    ("no spinning", {"spinning": False}),
    ("spinning after runs", {"spin_after_run": True}),
    ("optimisation extended", {"optimisation": "extended"}),
    ("optimisation basic", {"optimisation": "basic"}),
    ("session arena", {"arena": "session"}),
    ("no arena", {"arena": "none"}),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle folder or .tar.gz archive")
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json")
    parser.add_argument("--sizes", type=csv_ints, default=[],
                        help="short sides besides the bundle's own, comma-separated (e.g. 320,256)")
    parser.add_argument("--runs", type=int, default=30, help="timed inferences per row (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed inferences first (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=None,
                        help="a museum dataset with queries: mP@1 of every variant and size on it, and the drift "
                             "from fp32 at the bundle's size")
    parser.add_argument("--camera-jpeg", type=int, default=None, metavar="LONG",
                        help="with --data: the queries re-encoded as camera JPEGs of this long side, described "
                             "after a full and after a reduced decode (the drift of serve's --reduced-decode)")
    parser.add_argument("--concurrent", type=str, default="1x2,2x1",
                        help="in-flight x threads combinations for the throughput table, e.g. 1x2,2x1 "
                             "(default: %(default)s; 'none' to skip)")


def _time(backend, batch: np.ndarray, runs: int, warmup: int) -> list[float]:
    return timed_runs(lambda: backend.run(batch, ["descriptor"]), runs, warmup)


def throughput(model_path: Path, side: int, in_flight: int, threads: int, seconds: float = 3.0) -> dict[str, float]:
    """Frames a second with ``in_flight`` inferences running at once (one session each, ``threads``
    intra-op threads), and each inference's median ms."""
    from muselens.runtime.engine.backends import OrtBackend

    backends = [OrtBackend(model_path, threads=threads) for _ in range(in_flight)]
    batch = camera_frame(side)[None]
    for b in backends:
        _time(b, batch, 0, 3)
    counts = [0] * in_flight
    times: list[list[float]] = [[] for _ in range(in_flight)]
    stop = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            backends[i].run(batch, ["descriptor"])
            times[i].append((time.perf_counter() - t0) * 1e3)
            counts[i] += 1

    start = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(in_flight)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    return {"in_flight": in_flight, "threads": threads, "fps": sum(counts) / wall,
            "ms_p50": statistics.median([t for ts in times for t in ts])}


def accuracy(bundle, data: Path, variants: list[str], sides: list[int]) -> list[dict[str, Any]]:
    """mP@1 and mAP of each variant at each size on ``data``'s queries against the bundle's gallery,
    and their drift from the first (fp32 at the bundle's size): points lost, descriptor cosine and
    top-1 agreement per query."""
    from muselens.core.data.images import SkippedImages
    from muselens.core.data.museum_dataset import MuseumDataset
    from muselens.export.precision import descriptor_agreement, retrieval_metrics
    from muselens.runtime.engine import Describer

    museum = MuseumDataset.load(data)
    if not museum.queries:
        raise ValueError(f"{data} has no queries: accuracy cannot be measured")
    rows: list[dict[str, Any]] = []
    base: tuple[dict, np.ndarray, np.ndarray] | None = None
    for variant in variants:
        for side in sides:
            print(f"inference-settings: accuracy of {variant} at {side} on {data.name}", file=sys.stderr, flush=True)
            describer = Describer.open(bundle.model_path(variant), "ort-cpu", contract=bundle.manifest.descriptor,
                                       short_side=side)
            skipped = SkippedImages()
            refs, ref_ids = bundle.gallery.descriptors, [str(i) for i in bundle.gallery.instance_ids]
            queries, query_ids = describer.describe_records(museum.queries, skipped)
            measured = retrieval_metrics(refs, ref_ids, queries, query_ids)
            row = {"variant": variant, "short_side": side, "mp_at_1": measured["mp_at_1"], "map": measured["map"],
                   "queries": len(query_ids), "references": len(ref_ids), "skipped": len(skipped)}
            if base is None:
                base = (measured, queries, refs)
                row["drop_points"] = 0.0
            else:
                row["drop_points"] = 100 * (base[0]["mp_at_1"] - measured["mp_at_1"])
                agreement = descriptor_agreement(base[1], queries, base[2])
                row.update({k: agreement[k] for k in ("mean_cosine_to_fp32", "min_cosine_to_fp32",
                                                      "top1_agreement_with_fp32")})
            rows.append(row)
    return rows


CAMERA_JPEG_QUALITY = 90


def camera_jpeg(image: np.ndarray, long_side: int) -> bytes:
    """An RGB photo as a camera would send it: long side ``long_side`` (area-resized), JPEG q90."""
    import cv2

    scale = long_side / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(resized, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, CAMERA_JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return data.tobytes()


def decode_drift(bundle, data: Path, long_side: int) -> dict[str, Any]:
    """fp32 at the bundle's size on ``data``'s queries sent as camera JPEGs: decoded in full against
    decoded reduced (as served), each then resized by the contract; mP@1 of both and their agreement."""
    from muselens.core.data.images import SkippedImages, read_images
    from muselens.core.data.museum_dataset import MuseumDataset
    from muselens.export.precision import descriptor_agreement, retrieval_metrics
    from muselens.runtime.engine import Describer
    from muselens.runtime.frames.encoded import decode_encoded

    museum = MuseumDataset.load(data)
    if not museum.queries:
        raise ValueError(f"{data} has no queries: decode drift cannot be measured")
    if long_side < 32:
        raise ValueError(f"--camera-jpeg must be a long side of at least 32 pixels, got {long_side}")
    describer = Describer.open(bundle.model_path("fp32"), "ort-cpu", contract=bundle.manifest.descriptor)
    print(f"inference-settings: decode drift on {data.name} as {long_side}-pixel camera JPEGs",
          file=sys.stderr, flush=True)
    skipped = SkippedImages()
    full, reduced, ids, shapes = [], [], [], []
    for record, image in read_images(museum.queries, lambda r: r.path, skipped):
        jpeg = camera_jpeg(image, long_side)
        whole = decode_encoded(jpeg)
        small = decode_encoded(jpeg, at_least=lambda h, w: describer.output_size(h, w))
        full.append(describer.describe(whole))
        reduced.append(describer.describe(small))
        ids.append(record.instance_id)
        shapes.append((whole.shape[:2], small.shape[:2]))
    if not ids:
        raise ValueError(f"no query of {data} could be read ({len(skipped)} skipped)")
    refs, ref_ids = bundle.gallery.descriptors, [str(i) for i in bundle.gallery.instance_ids]
    full_m = retrieval_metrics(refs, ref_ids, np.stack(full), ids)
    reduced_m = retrieval_metrics(refs, ref_ids, np.stack(reduced), ids)
    agreement = descriptor_agreement(np.stack(full), np.stack(reduced), refs)
    return {"long_side": long_side, "jpeg_quality": CAMERA_JPEG_QUALITY, "short_side": describer.short_side,
            "queries": len(ids), "skipped": len(skipped),
            "frame_hw": list(shapes[0][0]), "reduced_hw": list(shapes[0][1]),
            "reduced_share": sum(a != b for a, b in shapes) / len(shapes),
            "mp_at_1_full": full_m["mp_at_1"], "mp_at_1_reduced": reduced_m["mp_at_1"],
            **{k: agreement[k] for k in ("mean_cosine_to_fp32", "min_cosine_to_fp32", "top1_agreement_with_fp32")}}


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    from muselens.runtime.bundle import load_bundle
    from muselens.runtime.engine.backends import OrtBackend

    if args.runs < 1 or args.warmup < 0:
        raise ValueError("--runs must be >= 1 and --warmup >= 0")
    if getattr(args, "camera_jpeg", None) is not None and args.data is None:
        raise ValueError("--camera-jpeg needs --data: the queries to re-encode")
    concurrent = [] if args.concurrent == "none" else [tuple(int(x) for x in c.split("x"))
                                                        for c in args.concurrent.split(",")]
    bundle = load_bundle(args.bundle)
    try:
        manifest = bundle.manifest
        own = manifest.descriptor.short_side
        sides = [own, *[s for s in args.sizes if s != own]]
        # fp32 first: every other row is measured against it
        variants = sorted((v for v, e in manifest.models.items() if e.format == "onnx"), key=lambda v: v != "fp32")
        rows: list[dict[str, Any]] = []
        for variant in variants:
            path = bundle.model_path(variant)
            for side in sides:
                batch = camera_frame(side)[None]
                for label, settings in SETTINGS if (variant == "fp32" and side == own) else SETTINGS[:1]:
                    print(f"inference-settings: {variant} at {side}, {label}", file=sys.stderr, flush=True)
                    backend = OrtBackend(path, **settings)
                    times = _time(backend, batch, args.runs, args.warmup)
                    rows.append({"variant": variant, "short_side": side, "setting": label, **settings,
                                 "input_hw": list(batch.shape[1:3]), **common.percentiles(times),
                                 "mp_at_1": manifest.metrics.get(variant, {}).get("mp_at_1")})
                    del backend
        base = next(r for r in rows if r["variant"] == variants[0] and r["short_side"] == own
                    and r["setting"] == "default")
        for r in rows:
            r["ratio_to_default"] = r["p50"] / base["p50"]
        parallel = []
        for in_flight, threads in concurrent:
            print(f"inference-settings: {in_flight} in flight x {threads} thread(s)", file=sys.stderr, flush=True)
            parallel.append(throughput(bundle.model_path(variants[0]), own, in_flight, threads))
        measured = accuracy(bundle, args.data, variants, sides) if args.data is not None else []
        camera = getattr(args, "camera_jpeg", None)
        drift = decode_drift(bundle, args.data, camera) if camera is not None else None
        return {"decode_drift": drift, "bundle": {"name": manifest.name, "bundle_version": manifest.bundle_version, "short_side": own,
                           "variants": variants},
                "data": str(args.data) if args.data is not None else None, "accuracy": measured,
                "settings": {"runs": args.runs, "warmup": args.warmup, "sizes": sides}, "rows": rows,
                "throughput": parallel, "baseline": {k: base[k] for k in ("variant", "short_side", "setting", "p50")}}
    finally:
        bundle.close()


def table(data: dict) -> list[str]:
    lines = ["| variant | short side | input | setting | mP@1 (export) | ms p50 / p95 | FPS | vs default |",
             "|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        mp = f"{100 * r['mp_at_1']:.2f}" if r.get("mp_at_1") is not None else "-"
        lines.append(f"| {r['variant']} | {r['short_side']} | {r['input_hw'][0]}x{r['input_hw'][1]} | {r['setting']} "
                     f"| {mp} | {r['p50']:.1f} / {r['p95']:.1f} | {1000 / r['p50']:.1f} | {r['ratio_to_default']:.2f}x |")
    if data.get("throughput"):
        lines += ["", "| inferences in flight x threads each | frames/s in total | ms per inference p50 |",
                  "|---|---|---|"]
        lines += [f"| {t['in_flight']} x {t['threads']} | {t['fps']:.1f} | {t['ms_p50']:.1f} |"
                  for t in data["throughput"]]
    if data.get("accuracy"):
        lines += ["", f"Accuracy on `{data['data']}` (its queries described by each variant at each size, searched "
                      "in the bundle's gallery as the service does):",
                  "", "| variant | short side | mP@1 | mAP | mP@1 points lost | query cosine to fp32 mean / min | "
                  "top-1 agreement with fp32 |", "|---|---|---|---|---|---|---|"]
        for a in data["accuracy"]:
            cos = f"{a['mean_cosine_to_fp32']:.4f} / {a['min_cosine_to_fp32']:.4f}" if "mean_cosine_to_fp32" in a else "-"
            agree = f"{100 * a['top1_agreement_with_fp32']:.1f} %" if "top1_agreement_with_fp32" in a else "-"
            lines.append(f"| {a['variant']} | {a['short_side']} | {100 * a['mp_at_1']:.2f} | {100 * a['map']:.2f} | "
                         f"{a['drop_points']:.2f} | {cos} | {agree} |")
    d = data.get("decode_drift")
    if d:
        lines += ["", f"Reduced JPEG decoding on `{data['data']}`: {d['queries']} queries as camera JPEGs (long side "
                      f"{d['long_side']}, q{d['jpeg_quality']}; e.g. {d['frame_hw'][1]}x{d['frame_hw'][0]} decoded "
                      f"at {d['reduced_hw'][1]}x{d['reduced_hw'][0]}; {100 * d['reduced_share']:.0f} % of them "
                      f"reduced), fp32 at short side {d['short_side']}:",
                  "", "| decode | mP@1 | cosine to the full decode mean / min | top-1 agreement |", "|---|---|---|---|",
                  f"| full, then resize | {100 * d['mp_at_1_full']:.2f} | - | - |",
                  f"| reduced (served), then resize | {100 * d['mp_at_1_reduced']:.2f} | "
                  f"{d['mean_cosine_to_fp32']:.4f} / {d['min_cosine_to_fp32']:.4f} | "
                  f"{100 * d['top1_agreement_with_fp32']:.1f} % |"]
    return lines


def main(args: argparse.Namespace) -> int:
    try:
        payload = run_settings(args)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = common.write_bench(args.out, "inference-settings", getattr(args, "argv", None), payload)
    print("\n".join(table(payload)))
    print(f"wrote {path}")
    return 0


def markdown(folder: Path, data: dict) -> str:
    b = data["bundle"]
    lines = [f"## {folder.name}", "", f"`{data['command']}`", "", common.machine_line(data["environment"]) + ".", "",
             f"Bundle `{b['name']}` {b['bundle_version']} (variants {', '.join(b['variants'])}, recognition short "
             f"side {b['short_side']}). Engine alone (ONNX Runtime CPU), a 16:9 frame, median of "
             f"{data['settings']['runs']} runs after {data['settings']['warmup']} warm-up; `vs default` divides by "
             f"{data['baseline']['variant']} at {data['baseline']['short_side']} with the default settings, measured "
             "in the same run. mP@1 is the export's, on the museum's queries at the bundle's size.", "",
             *table(data), ""]
    return "\n".join(lines)

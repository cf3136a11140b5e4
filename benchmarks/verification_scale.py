"""``muselens bench verification``: what geometric verification costs per reference and per query, by museum size.

A bundle's galleries are grown to each size asked for (100, 1,000, 10,000 artworks by default)
by repeating its artworks under new ids: every copy keeps its reference's local features, and
its descriptor gets a little noise (then unit length again), so that search has as many
distinct vectors to rank as a real museum of that size. For each size and each query photo of
``--data``, the frame is described once (its cost does not depend on the museum), then timed:
the global search (:class:`~muselens.runtime.recognition.search.GallerySearch`), and the
verification of the shortlist (:class:`~muselens.runtime.verification.ShortlistVerifier`: the
frame's local features, then the fits), and the local-feature vote over every reference
(:class:`~muselens.runtime.verification.LocalVoter`: its index's build, the size of the built index
an export keeps in the bundle and its load from those bytes, then a search per frame) up to
``--vote-max`` artworks. Memory is what the local features and the gallery take,
per reference and in all. The search and the fits are measured at every size, nothing
extrapolated: 10,000 artworks of ~35 KB of ORB features each fit in a few hundred MB. The vote
beyond ``--vote-max`` is not measured (its index takes minutes to build at 10,000 artworks on
2 cores) and the table says so.

Torch-free; the service's own classes, in this process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from muselens.benchmarks import common
from muselens.benchmarks.load import csv_ints

DEFAULT_ARTWORKS = (100, 1_000, 10_000)
NOISE = 0.02  # per coordinate before renormalising: copies stay distinct, none outranks the original


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="a bundle exported with local features")
    parser.add_argument("--data", type=Path, required=True, help="the bundle's museum: its query photos are sent")
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json")
    parser.add_argument("--artworks", type=csv_ints, default=list(DEFAULT_ARTWORKS),
                        help="museum sizes, comma-separated (default: 100,1000,10000)")
    parser.add_argument("--queries", type=int, default=40, help="query photos timed per size (default: %(default)s)")
    parser.add_argument("--vote-max", type=int, default=1_000,
                        help="largest museum whose local-feature vote is measured (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)


def grown(bundle, artworks: int, seed: int):
    """The bundle's gallery and local features repeated to ``artworks`` artworks (rows in gallery order)."""
    from muselens.runtime.bundle import Gallery
    from muselens.runtime.verification import LocalFeatureStore

    ids = bundle.gallery.instance_ids
    unique = list(dict.fromkeys(ids.tolist()))
    rng = np.random.default_rng(seed)
    rows, names, vectors = [], [], []
    for copy in range(-(-artworks // len(unique))):
        for iid in unique[:artworks - copy * len(unique)]:
            for row in np.flatnonzero(ids == iid):
                v = bundle.gallery.descriptors[row]
                if copy:
                    v = v + rng.normal(0, NOISE, v.shape).astype(np.float32)
                    v /= np.linalg.norm(v)
                rows.append(int(row))
                names.append(iid if copy == 0 else f"{iid}~{copy}")
                vectors.append(v)
    store = bundle.local_features
    features = [store.features(r) for r in rows]
    return Gallery(np.stack(vectors).astype(np.float32), names), LocalFeatureStore.from_features(features, store.width)


def measure(bundle_path: Path, data: Path, sizes: list[int], queries: int, seed: int,
            vote_max: int = 1_000) -> dict[str, Any]:
    from muselens.core.data.images import read_image
    from muselens.core.data.museum_dataset import MuseumDataset
    from muselens.runtime.recognition.search import GallerySearch
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig
    from muselens.runtime.verification import DEFAULT_SHORTLIST, LocalVoter, ShortlistVerifier

    model = ServedModel.load(bundle_path, ServingConfig())
    bundle = model.bundle
    if bundle.local_features is None:
        raise ValueError(f"{bundle_path} has no local features: export it with --local-features orb")
    photos = [r.path for r in MuseumDataset.load(data).queries][:queries]
    if not photos:
        raise ValueError(f"{data} has no query photos")
    images = [read_image(p) for p in photos]
    descriptors = [model.describer.describe(image) for image in images]
    rows = []
    for size in sizes:
        print(f"verification at {size} artworks", file=sys.stderr, flush=True)
        gallery, store = grown(bundle, size, seed)
        search = GallerySearch(gallery, "exact")
        started = time.perf_counter()
        verifier = ShortlistVerifier(store, bundle.manifest.local_features, gallery.instance_ids,
                                     vote=size <= vote_max)
        build_s = time.perf_counter() - started
        kept = {}
        if verifier.voter is not None:  # what an export keeps (``--vote-index``), and loading it back
            index_bytes = verifier.voter.to_bytes()
            started = time.perf_counter()
            LocalVoter(store, bundle.manifest.local_features, gallery.instance_ids, index_bytes=index_bytes)
            kept = {"kept_index_mb": len(index_bytes) / 2**20,
                    "kept_index_bytes_per_reference": len(index_bytes) / len(store),
                    "kept_index_load_s": time.perf_counter() - started}
        search_ms, features_ms, fit_ms, vote_ms, verified = [], [], [], [], 0
        for image, descriptor in zip(images, descriptors):
            t0 = time.perf_counter()
            hits = search.search(descriptor, DEFAULT_SHORTLIST)
            t1 = time.perf_counter()
            frame = verifier.frame_features(image)
            t2 = time.perf_counter()
            candidates = [(iid, float(score), search.references(iid)) for iid, score in zip(hits.instance_ids,
                                                                                              hits.scores)]
            report = verifier.verify(frame, candidates)
            t3 = time.perf_counter()
            if verifier.voter is not None:
                verifier.voted(verifier.row_votes(frame), hits.instance_ids)
                vote_ms.append((time.perf_counter() - t3) * 1e3)
            search_ms.append((t1 - t0) * 1e3)
            features_ms.append((t2 - t1) * 1e3)
            fit_ms.append((t3 - t2) * 1e3)
            verified += report.verified
        rows.append({"artworks": size, "references": len(store), "local_features_mb": store.nbytes / 2**20,
                     "gallery_mb": gallery.descriptors.nbytes / 2**20,
                     "bytes_per_reference": (store.nbytes + gallery.descriptors[0].nbytes) / len(store),
                     "search_ms": common.percentiles(search_ms), "frame_features_ms": common.percentiles(features_ms),
                     "fit_ms": common.percentiles(fit_ms),
                     "added_ms_p50": float(np.percentile(np.add(np.add(search_ms, features_ms), fit_ms), 50)),
                     "verified_share": verified / len(images), "measured": True,
                     "vote": ({"index_build_s": build_s, **kept, "ms": common.percentiles(vote_ms), "measured": True}
                              if verifier.voter is not None else
                              {"measured": False, "reason": f"above --vote-max {vote_max} artworks"})})
    model.close()
    return {"bundle": str(bundle_path), "data": str(data), "queries": len(images), "shortlist": DEFAULT_SHORTLIST,
            "feature_config": bundle.manifest.local_features.to_dict(), "sizes": rows}


def _vote(vote: dict[str, Any]) -> str:
    if not vote["measured"]:
        return f"not measured ({vote['reason']})"
    kept = (f"; kept: {vote['kept_index_mb']:.0f} MB ({vote['kept_index_bytes_per_reference'] / 1e3:.0f} KB a "
            f"reference), loads in {vote['kept_index_load_s']:.2f} s" if "kept_index_mb" in vote else "")
    return f"{vote['index_build_s']:.1f} s, {vote['ms']['p50']:.1f} ms{kept}"


def table(data: dict[str, Any]) -> str:
    lines = ["| artworks | references | local features MB | bytes / reference | search ms p50 | frame features ms "
             "p50 | fits ms p50 | added per query ms p50 | verified | vote: index build s, ms p50; the index kept in "
             "the bundle |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["sizes"]:
        lines.append(f"| {r['artworks']:,} | {r['references']:,} | {r['local_features_mb']:.1f} | "
                     f"{r['bytes_per_reference'] / 1e3:.1f} KB | {r['search_ms']['p50']:.2f} | "
                     f"{r['frame_features_ms']['p50']:.1f} | {r['fit_ms']['p50']:.1f} | {r['added_ms_p50']:.1f} | "
                     f"{100 * r['verified_share']:.0f} % | {_vote(r['vote'])} |")
    return "\n".join(lines)


def markdown(folder: Path, data: dict[str, Any]) -> str:
    return "\n".join([f"## {folder.name}", "", f"`{data['command']}`", "", common.machine_line(data["environment"]),
                      "", f"Bundle {data['bundle']}, {data['queries']} query photos of {data['data']}, shortlist "
                      f"{data['shortlist']}, {data['feature_config']}. Every size measured (none extrapolated): "
                      "the museum's artworks repeated under new ids, descriptors with a little noise.", "",
                      table(data), ""])


def main(args: argparse.Namespace) -> int:
    if args.queries < 1 or any(n < 1 for n in args.artworks):
        print("error: --queries and every --artworks size must be >= 1", file=sys.stderr)
        return 2
    try:
        payload = measure(args.bundle, args.data, list(args.artworks), args.queries, args.seed, args.vote_max)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = common.write_bench(args.out, "verification", getattr(args, "argv", None), payload)
    print(table(payload))
    print(f"\nwrote {path}")
    return 0

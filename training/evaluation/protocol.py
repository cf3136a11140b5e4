"""Run one method over a museum dataset and measure it (thesis 4.3, 5.4; papers 002, 003).

Every reference, query and distractor is described once; similarities come from one matrix
product (or SIFT's pairwise scores); the torch-free metrics of :mod:`muselens.core.metrics`
turn them into mP@1, mAP, Recall@K, clustering NMI/F1 and the open-set operating points.
Unreadable images are reported and skipped.

Given photos of artworks the museum does not hold (``unknown``), it also measures the recogniser
as shipped (:func:`shipped_open_set`): the threshold a bundle of this method would carry,
calibrated as export calibrates it (:mod:`muselens.core.metrics.threshold`) or given (a
bundle's manifest), and the share of queries, unknown photos and distractors it accepts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from muselens.core.data.images import IMAGE_SUFFIXES, SkippedImages, read_image, read_images
from muselens.core.data.museum_dataset import ImageRecord, MuseumDataset
from muselens.core.metrics import (average_query_expansion, clustering_obstacle, database_side_augmentation,
                                      evaluate_clustering, evaluate_open_set, evaluate_retrieval,
                                      instance_average, similarity)
from muselens.core.metrics.threshold import (DEFAULT_TARGET_FAR, calibrate_source_scores, calibrate_sources,
                                                negative_scores, negative_top1_scores)
from muselens.training.evaluation.methods import DescriptorMethod, PairwiseMethod


@dataclass(frozen=True)
class EvalOptions:
    instance_avg: bool = False  # 5.4.4: one averaged descriptor per artwork
    qe: int = 0  # 5.4.2: average query expansion with the top-k results (0 = off)
    dba: int = 0  # 5.4.3: database-side augmentation with k neighbours (0 = off)
    clustering: bool = True  # 003: NMI/F1 of k-means with 1 and 3 clusters per artwork
    target_fars: tuple[float, ...] = (0.01, 0.05)
    shipped_far: float = DEFAULT_TARGET_FAR  # target FAR of the threshold a bundle would ship
    batch_images: int = 32  # images decoded and described per step

    def check(self, method: DescriptorMethod | PairwiseMethod) -> None:
        if self.qe < 0 or self.dba < 0:
            raise ValueError("qe and dba are numbers of neighbours: 0 (off) or more")
        if method.kind == "pairwise" and (self.qe or self.dba):
            raise ValueError(f"{method.name} gives pairwise scores, not descriptors: "
                             "query expansion and DBA need a descriptor method")

    def suffix(self) -> str:
        parts = (["+ia"] if self.instance_avg else []) + ([f"+qe{self.qe}"] if self.qe else []) \
            + ([f"+dba{self.dba}"] if self.dba else [])
        return "".join(parts)


@dataclass
class MethodResult:
    method: str
    info: dict[str, Any]
    options: dict[str, Any]
    counts: dict[str, int]
    retrieval: dict[str, Any]
    clustering: dict[str, Any] | None
    open_set: dict[str, Any] | None
    timing: dict[str, float]
    skipped: list[dict[str, str]]
    # For plots: each query's top-1 score and whether it was right; distractors' top-1 scores.
    query_top1: np.ndarray = field(repr=False)
    query_correct: np.ndarray = field(repr=False)
    distractor_top1: np.ndarray = field(repr=False)
    shipped: dict[str, Any] | None = None  # open set at the shipped threshold (with unknown photos)

    @property
    def name(self) -> str:
        return self.method + _suffix(self.options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "name": self.name, "info": self.info, "options": self.options,
            "counts": self.counts, "retrieval": self.retrieval, "clustering": self.clustering,
            "open_set": self.open_set, "shipped": self.shipped, "timing": self.timing, "skipped": self.skipped,
        }


def _suffix(options: dict[str, Any]) -> str:
    return EvalOptions(**{k: options[k] for k in ("instance_avg", "qe", "dba")}).suffix()


def _chunks(items: Sequence, n: int):
    for start in range(0, len(items), n):
        yield items[start:start + n]


def describe_records(
    records: Sequence[ImageRecord],
    extract: Callable[[Sequence[np.ndarray]], np.ndarray],
    skipped: SkippedImages,
    *,
    batch_images: int = 32,
    progress: bool = True,
    desc: str = "describing",
) -> tuple[np.ndarray | None, list[ImageRecord]]:
    """Descriptors of the readable records, in order, and those records."""
    parts, kept = [], []
    with tqdm(total=len(records), desc=desc, unit="img", disable=not progress, file=sys.stderr) as bar:
        for chunk in _chunks(records, batch_images):
            loaded = list(read_images(chunk, lambda r: r.path, skipped))
            if loaded:
                parts.append(extract([image for _, image in loaded]))
                kept.extend(record for record, _ in loaded)
            bar.update(len(chunk))
    return (np.concatenate(parts) if parts else None), kept


def _labels(records: Sequence[ImageRecord]) -> np.ndarray:
    return np.array([r.instance_id for r in records], dtype=str)


def _top1(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best score and its column per row; ties go to the lowest column, as the runtime does."""
    idx = np.argmax(scores, axis=1)
    return scores[np.arange(scores.shape[0]), idx], idx


def max_per_instance(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Collapse a ``(Q, R)`` score matrix to ``(Q, I)``: an artwork scores its best reference.

    Instance-averaging for pairwise methods, whose scores cannot be averaged as descriptors."""
    ids = np.unique(labels)
    out = np.stack([scores[:, labels == i].max(axis=1) for i in ids], axis=1)
    return out, ids


def _score(
    method: DescriptorMethod | PairwiseMethod,
    dataset: MuseumDataset,
    options: EvalOptions,
    skipped: SkippedImages,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any], dict[str, float], dict[str, Any]]:
    """(query scores, gallery labels, query labels, distractor scores, labelled descriptors,
    timing, raw); timing also carries the number of readable references; raw is what
    :func:`shipped_open_set` needs (the readable references, unprocessed descriptors or scores)."""
    timing: dict[str, float] = {}
    if method.kind == "pairwise":
        from muselens.training.baselines.sift import SiftRetrieval, extract_features

        def features(records, desc):
            loaded = list(read_images(records, lambda r: r.path, skipped))
            feats = extract_features((im for _, im in loaded), max_side=method.config.max_side,
                                     nfeatures=method.config.nfeatures, workers=method.workers,
                                     progress=progress, desc=desc)
            return feats, [r for r, _ in loaded]

        t0 = time.perf_counter()
        ref_feats, refs = features(dataset.references, "SIFT references")
        q_feats, queries = features(dataset.queries, "SIFT queries")
        d_feats, _ = features(dataset.distractors, "SIFT distractors")
        n_described = len(ref_feats) + len(q_feats) + len(d_feats)
        timing["describe_s"] = time.perf_counter() - t0
        index = SiftRetrieval(ref_feats, method.config)
        t0 = time.perf_counter()
        q_scores = index.score_all(q_feats, progress=progress)
        d_scores = index.score_all(d_feats, progress=progress) if d_feats else None
        timing["match_s"] = time.perf_counter() - t0
        timing["ms_per_query"] = 1000 * (timing["describe_s"] / max(n_described, 1)
                                         + timing["match_s"] / max(len(q_feats) + len(d_feats), 1))
        g_labels = _labels(refs)
        timing["references"] = len(refs)
        raw = {"references": refs, "index": index, "query_scores": q_scores, "distractor_scores": d_scores}
        if options.instance_avg:
            q_scores, g_labels = max_per_instance(q_scores, _labels(refs))
            if d_scores is not None:
                d_scores, _ = max_per_instance(d_scores, _labels(refs))
        return q_scores, g_labels, _labels(queries), d_scores, {}, timing, raw

    t0 = time.perf_counter()
    kw = {"batch_images": options.batch_images, "progress": progress}
    ref_desc, refs = describe_records(dataset.references, method.extract, skipped, desc="references", **kw)
    q_desc, queries = describe_records(dataset.queries, method.extract, skipped, desc="queries", **kw)
    d_desc, _ = describe_records(dataset.distractors, method.extract, skipped, desc="distractors", **kw)
    n_described = len(refs) + len(queries) + (0 if d_desc is None else len(d_desc))
    timing["describe_s"] = time.perf_counter() - t0
    timing["ms_per_image"] = 1000 * timing["describe_s"] / max(n_described, 1)
    if ref_desc is None or q_desc is None:
        raise ValueError("no readable references or no readable queries: nothing to evaluate")
    t0 = time.perf_counter()
    gallery, g_labels = ref_desc, _labels(refs)
    if options.dba:
        gallery = database_side_augmentation(gallery, k=min(options.dba, len(gallery) - 1))
    if options.instance_avg:
        gallery, g_labels = instance_average(gallery, g_labels)
    probes = q_desc if d_desc is None else np.concatenate([q_desc, d_desc])
    if options.qe:
        probes = average_query_expansion(probes, gallery, k=options.qe)
    scores = similarity(probes, gallery)
    timing["match_s"] = time.perf_counter() - t0
    timing["references"] = len(refs)
    q_scores, d_scores = scores[: len(q_desc)], (None if d_desc is None else scores[len(q_desc):])
    labelled = {"descriptors": np.concatenate([ref_desc, q_desc]),
                "labels": np.concatenate([_labels(refs), _labels(queries)])}
    raw = {"references": refs, "reference_descriptors": ref_desc, "query_descriptors": q_desc,
           "distractor_descriptors": d_desc}
    return q_scores, g_labels, _labels(queries), d_scores, labelled, timing, raw


# -- open set at the shipped threshold ----------------------------------------------------------

ACCEPT_RULE = ("accepted: top-1 score > threshold, against one entry per artwork (the instance-averaged "
               "gallery; for pairwise scores, an artwork's best reference), as the runtime decides "
               "(runtime/recognition/decision_rule.py; its 'uncertain' margin is not applied)")


@dataclass(frozen=True)
class GivenThreshold:
    """A threshold set elsewhere (a bundle's manifest), and how, in words and as recorded."""

    value: float
    how: str
    record: dict[str, Any] = field(default_factory=dict)


def unknown_images(folder: Path) -> list[Path]:
    """The images directly inside ``folder``: photos of artworks the museum does not hold."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--unknown {folder} is not a folder")
    paths = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not paths:
        raise ValueError(f"--unknown {folder} has no images directly inside it "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))}; subfolders are not read)")
    return paths


class _LazyImages(Sequence):
    """Reference photos read when asked for: a museum's references need not fit in memory."""

    def __init__(self, records: Sequence[ImageRecord]):
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):  # type: ignore[override]
        return read_image(self.records[i].path)


def accept_rates(threshold: float, query_top1: np.ndarray, query_correct: np.ndarray,
                 unknown_top1: np.ndarray, distractor_top1: np.ndarray) -> dict[str, Any]:
    """Shares accepted at ``threshold`` (:data:`ACCEPT_RULE`); None where there is nothing to count."""
    q_in = query_top1 > threshold

    def share(mask: np.ndarray) -> float | None:
        return float(mask.mean()) if mask.size else None

    return {"n_queries": int(query_top1.size), "correct_accept_rate": share(q_in & query_correct),
            "wrong_accept_rate": share(q_in & ~query_correct),
            "n_unknown": int(unknown_top1.size), "unknown_far": share(unknown_top1 > threshold),
            "n_distractors": int(distractor_top1.size), "distractor_far": share(distractor_top1 > threshold)}


def shipped_open_set(
    method: DescriptorMethod | PairwiseMethod,
    raw: dict[str, Any],
    query_labels: np.ndarray,
    unknown: Sequence[Path],
    options: EvalOptions,
    *,
    threshold: GivenThreshold | None = None,
    skipped: SkippedImages,
    progress: bool = True,
) -> dict[str, Any]:
    """The recogniser as shipped: its threshold and the queries, unknown photos and distractors it accepts.

    Scores are against one entry per artwork, as the runtime compares: the instance-averaged
    gallery for descriptors, an artwork's best reference for pairwise scores. Without a given
    ``threshold`` it is calibrated as export does, at ``options.shipped_far``: impostor phone views
    of each reference, generated non-artwork photos and the museum's distractors
    (:mod:`muselens.core.metrics.threshold`); QE and DBA, which the runtime does not do, play no part.
    """
    refs = raw["references"]
    ref_labels = _labels(refs)
    records = [ImageRecord(Path(p), "unknown", None) for p in unknown]
    if method.kind == "pairwise":
        from muselens.training.baselines.sift import extract_features

        index, config = raw["index"], method.config

        def score_columns(images: Sequence[np.ndarray]) -> np.ndarray:  # inlier counts against each reference
            feats = extract_features(list(images), max_side=config.max_side, nfeatures=config.nfeatures,
                                     workers=method.workers, progress=False)
            return index.score_all(feats, progress=False) if feats else np.zeros((0, len(refs)))

        q_scores, ids = max_per_instance(raw["query_scores"], ref_labels)
        d_top1 = np.zeros(0) if raw["distractor_scores"] is None else raw["distractor_scores"].max(axis=1)
        u_images = [im for _, im in read_images(records, lambda r: r.path, skipped)]
        u_top1 = score_columns(u_images).max(axis=1) if u_images and len(refs) else np.zeros(0)
        if threshold is None:
            negatives = negative_top1_scores(score_columns, ref_labels, references=_LazyImages(refs),
                                             reference_labels=ref_labels, distractor_scores=d_top1)
            calibration = calibrate_source_scores(negatives, options.shipped_far)  # inlier counts: no clipping
    else:
        gallery, ids = instance_average(raw["reference_descriptors"], ref_labels)
        q_scores = similarity(raw["query_descriptors"], gallery)
        d_desc = raw["distractor_descriptors"]
        d_top1 = np.zeros(0) if d_desc is None else similarity(d_desc, gallery).max(axis=1)
        u_desc, _ = describe_records(records, method.extract, skipped, batch_images=options.batch_images,
                                     progress=progress, desc="unknown")
        u_top1 = np.zeros(0) if u_desc is None else similarity(u_desc, gallery).max(axis=1)
        if threshold is None:
            negatives = negative_scores(method.extract, gallery, ids, references=_LazyImages(refs),
                                        reference_labels=ref_labels, distractors=d_desc)
            calibration = calibrate_sources(negatives, options.shipped_far)
    top1, idx = _top1(q_scores)
    correct = ids[idx] == query_labels
    if threshold is None:
        value, set_by = calibration.value, "calibrated"
        how, record = "calibrated as export does: " + calibration.describe(), calibration.to_dict()
    else:
        value, set_by, how, record = threshold.value, "given", threshold.how, dict(threshold.record)
    return {"threshold": float(value), "set_by": set_by, "how": how, "calibration": record,
            "rule": ACCEPT_RULE, **accept_rates(value, top1, correct, u_top1, d_top1)}


CLUSTERS_PER_CLASS = (1, 3)


def _clustering(method: DescriptorMethod | PairwiseMethod, labelled: dict[str, Any]) -> dict[str, Any]:
    """NMI/F1 per clusters-per-artwork count; a count that cannot run gets None and its reason."""
    if not labelled:
        reason = f"{method.name} gives pairwise scores, not descriptors to cluster"
        return {str(m): {"n_clusters": None, "nmi": None, "f1": None, "skipped": reason} for m in CLUSTERS_PER_CLASS}
    x, y = labelled["descriptors"], labelled["labels"]
    n_classes = int(np.unique(y).size)
    out: dict[str, Any] = {}
    for m in CLUSTERS_PER_CLASS:
        reason = clustering_obstacle(y, m)
        if reason is None:
            s = evaluate_clustering(x, y, clusters_per_class=(m,))[m]
            out[str(m)] = {"n_clusters": s.n_clusters, "nmi": s.nmi, "f1": s.f1}
        else:
            out[str(m)] = {"n_clusters": n_classes * m, "nmi": None, "f1": None, "skipped": reason}
    return out


def evaluate_method(
    dataset: MuseumDataset,
    method: DescriptorMethod | PairwiseMethod,
    options: EvalOptions = EvalOptions(),
    *,
    progress: bool = True,
    unknown: Sequence[Path] | None = None,
    threshold: GivenThreshold | None = None,
) -> MethodResult:
    """Measure ``method`` on ``dataset``; with ``unknown`` (photos of artworks the museum lacks)
    also at the shipped threshold: ``threshold`` when given, else calibrated as export does."""
    options.check(method)
    skipped = SkippedImages()
    q_scores, g_labels, q_labels, d_scores, labelled, timing, raw = _score(
        method, dataset, options, skipped, progress
    )
    retrieval = evaluate_retrieval(q_scores, q_labels, g_labels)
    top1, idx = _top1(q_scores)
    correct = g_labels[idx] == q_labels
    d_top1 = _top1(d_scores)[0] if d_scores is not None and len(d_scores) else np.zeros(0)

    clustering = _clustering(method, labelled) if options.clustering else None
    open_set = None
    if d_top1.size:
        open_set = evaluate_open_set(top1, correct, d_top1, options.target_fars).to_dict()
    shipped = None
    if unknown is not None:
        t0 = time.perf_counter()
        shipped = shipped_open_set(method, raw, q_labels, unknown, options, threshold=threshold,
                                   skipped=skipped, progress=progress)
        timing["shipped_s"] = time.perf_counter() - t0

    return MethodResult(
        method=method.name,
        info=method.info,
        options={"instance_avg": options.instance_avg, "qe": options.qe, "dba": options.dba},
        counts={"references": int(timing.pop("references")),
                "gallery": int(len(g_labels)), "queries": int(len(q_labels)),
                "distractors": int(d_top1.size), "orphan_queries": len(dataset.orphan_queries),
                "skipped": len(skipped)},
        retrieval=retrieval.to_dict(),
        clustering=clustering,
        open_set=open_set,
        timing=timing,
        skipped=skipped.to_list(),
        query_top1=top1,
        query_correct=correct,
        distractor_top1=d_top1,
        shipped=shipped,
    )


def evaluate_methods(dataset: MuseumDataset, names: Sequence[str], options: EvalOptions = EvalOptions(), *,
                     unknown: Sequence[Path] | None = None, progress: bool = True,
                     report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
                     **method_args: Any) -> list[MethodResult]:
    """Build each named method (:func:`~muselens.training.evaluation.methods.build_method` with
    ``method_args``) and measure it on ``dataset``, reporting one line per method; a method that
    cannot be built or measured raises ``ValueError`` naming it."""
    from muselens.training.evaluation.methods import build_method

    results = []
    for name in names:
        try:
            method = build_method(name, **method_args)
            results.append(evaluate_method(dataset, method, options, progress=progress, unknown=unknown))
        except ValueError as error:  # a CheckpointError too
            raise ValueError(f"{name}: {error}") from error
        report(f"{results[-1].name}: mP@1 {100 * results[-1].retrieval['mp_at_1']:.2f}  "
               f"mAP {100 * results[-1].retrieval['map']:.2f}")
    return results

"""Run one method over a museum dataset and measure it (thesis 4.3, 5.4; papers 002, 003).

Every reference, query and distractor is described once; similarities come from one matrix
product (or SIFT's pairwise scores); the torch-free metrics of :mod:`muselens.runtime.metrics`
turn them into mP@1, mAP, Recall@K, clustering NMI/F1 and the open-set operating points.
Unreadable images are reported and skipped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from muselens.runtime.data.images import SkippedImages, read_images
from muselens.runtime.data.museum import ImageRecord, MuseumDataset
from muselens.runtime.metrics import (average_query_expansion, database_side_augmentation,
                                      evaluate_clustering, evaluate_open_set, evaluate_retrieval,
                                      instance_average, similarity)
from muselens.training.evaluation.methods import DescriptorMethod, PairwiseMethod


@dataclass(frozen=True)
class EvalOptions:
    instance_avg: bool = False  # 5.4.4: one averaged descriptor per artwork
    qe: int = 0  # 5.4.2: average query expansion with the top-k results (0 = off)
    dba: int = 0  # 5.4.3: database-side augmentation with k neighbours (0 = off)
    clustering: bool = True  # 003: NMI/F1 of k-means with 1 and 3 clusters per artwork
    target_fars: tuple[float, ...] = (0.01, 0.05)
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

    @property
    def name(self) -> str:
        return self.method + _suffix(self.options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "name": self.name, "info": self.info, "options": self.options,
            "counts": self.counts, "retrieval": self.retrieval, "clustering": self.clustering,
            "open_set": self.open_set, "timing": self.timing, "skipped": self.skipped,
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any], dict[str, float]]:
    """(query scores, gallery labels, query labels, distractor scores, labelled descriptors,
    timing); timing also carries the number of readable references."""
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
        if options.instance_avg:
            q_scores, g_labels = max_per_instance(q_scores, _labels(refs))
            if d_scores is not None:
                d_scores, _ = max_per_instance(d_scores, _labels(refs))
        return q_scores, g_labels, _labels(queries), d_scores, {}, timing

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
    return q_scores, g_labels, _labels(queries), d_scores, labelled, timing


def evaluate_method(
    dataset: MuseumDataset,
    method: DescriptorMethod | PairwiseMethod,
    options: EvalOptions = EvalOptions(),
    *,
    progress: bool = True,
) -> MethodResult:
    options.check(method)
    skipped = SkippedImages()
    q_scores, g_labels, q_labels, d_scores, labelled, timing = _score(
        method, dataset, options, skipped, progress
    )
    retrieval = evaluate_retrieval(q_scores, q_labels, g_labels)
    top1, idx = _top1(q_scores)
    correct = g_labels[idx] == q_labels
    d_top1 = _top1(d_scores)[0] if d_scores is not None and len(d_scores) else np.zeros(0)

    clustering = None
    if options.clustering and labelled and len(np.unique(labelled["labels"])) > 1:
        scores = evaluate_clustering(labelled["descriptors"], labelled["labels"], clusters_per_class=(1, 3))
        clustering = {str(m): {"n_clusters": s.n_clusters, "nmi": s.nmi, "f1": s.f1}
                      for m, s in scores.items()}
    open_set = None
    if d_top1.size:
        open_set = evaluate_open_set(top1, correct, d_top1, options.target_fars).to_dict()

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
    )

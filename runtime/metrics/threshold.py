"""The "no artwork" threshold, calibrated whether or not the museum has photos of nothing.

A frame must be rejected when it shows no artwork the museum holds. Two kinds of such frames
exist, and a museum rarely has photos of either:

* **no artwork at all** (walls, floors, doorways, visitors): the museum's ``distractors/``
  when it has some, and always muselens's own generated non-artwork photos
  (:func:`~muselens.runtime.data.synthetic.museum.non_artwork_photos`);
* **an artwork the museum does not hold**: simulated by phone views
  (:func:`~muselens.runtime.data.phone.phone_view`) of each reference, scored against every
  artwork *but its own* (leave-one-artwork-out impostors).

Each source is calibrated for ``target_far`` on its own
(:func:`~muselens.runtime.metrics.open_set.calibrate_threshold`) and the threshold is the
highest of them, so that no source is accepted more often than the target. What each source
gave is kept in :class:`ThresholdCalibration`, which the bundle's manifest records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from muselens.runtime.metrics.open_set import _target, calibrate_threshold
from muselens.runtime.metrics.ranking import similarity

DISTRACTORS = "distractors"
IMPOSTORS = "impostor-views"
GENERATED = "generated-non-artwork"
SOURCES = (DISTRACTORS, IMPOSTORS, GENERATED)
METHOD = "highest-per-source-threshold"  # what calibrate_sources does, as a bundle's manifest records it
DEFAULT_TARGET_FAR = 0.01  # what a bundle ships with unless told otherwise; export and evaluation share it
DEFAULT_GENERATED = 48  # generated non-artwork photos: enough for a 2 % quantile, ~2 s to describe
DEFAULT_VIEWS_PER_REFERENCE = 1
MAX_IMPOSTOR_REFERENCES = 2000  # references viewed at most (a seeded sample beyond): bounds export time


@dataclass(frozen=True)
class SourceThreshold:
    """One source of negatives: how many scores and the threshold they alone would give."""

    source: str
    count: int
    threshold: float


@dataclass(frozen=True)
class ThresholdCalibration:
    value: float
    target_far: float
    sources: tuple[SourceThreshold, ...]

    @property
    def deciding_source(self) -> str:
        return max(self.sources, key=lambda s: s.threshold).source

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "target_far": self.target_far,
                "sources": [asdict(s) for s in self.sources]}

    def describe(self) -> str:
        """One line for a person: the value, the target and what each source gave."""
        parts = ", ".join(f"{s.source} {s.threshold:.4f} (n={s.count})" for s in self.sources)
        return f"{self.value:.4f} at FAR {self.target_far:g}, the highest of: {parts}"


def impostor_scores(view_descriptors: np.ndarray, view_labels: Sequence, gallery: np.ndarray,
                    gallery_labels: Sequence) -> np.ndarray:
    """Each view's best score against every gallery row of *another* artwork.

    This is what a photo of an artwork absent from the gallery scores: its nearest artwork is
    never itself. A museum of one artwork has no impostors (an empty array).
    """
    v_labels, g_labels = np.asarray(view_labels), np.asarray(gallery_labels)
    if view_descriptors.ndim != 2 or view_descriptors.shape[0] != v_labels.shape[0]:
        raise ValueError(f"{view_descriptors.shape} view descriptors for {v_labels.shape[0]} labels")
    if gallery.ndim != 2 or gallery.shape[0] != g_labels.shape[0]:
        raise ValueError(f"{gallery.shape} gallery rows for {g_labels.shape[0]} labels")
    if np.unique(g_labels).size < 2 or view_descriptors.shape[0] == 0:
        return np.zeros(0, np.float32)
    scores = similarity(view_descriptors, gallery)
    scores = np.where(v_labels[:, None] == g_labels[None, :], -np.inf, scores)
    return scores.max(axis=1)


def calibrate_sources(scores: Mapping[str, np.ndarray], target_far: float) -> ThresholdCalibration:
    """The highest of the per-source thresholds at ``target_far``, clipped to [-1, 1].

    Sources with no score are left out; at least one must have scores.
    """
    return calibrate_source_scores(scores, target_far, bounds=(-1.0, 1.0))


def calibrate_source_scores(scores: Mapping[str, np.ndarray], target_far: float, *,
                            bounds: tuple[float, float] | None = None) -> ThresholdCalibration:
    """:func:`calibrate_sources` for any score scale: clipped to ``bounds`` only when given.

    Pairwise scores (SIFT's RANSAC inlier counts) are not cosines: clipping them to [-1, 1]
    would accept every frame with two inliers.
    """
    far = _target(target_far)
    unknown = set(scores) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown threshold sources {sorted(unknown)}; expected some of {SOURCES}")
    found = []
    for name in SOURCES:
        s = np.asarray(scores.get(name, ()), dtype=np.float64).reshape(-1)
        if s.size:
            t = calibrate_threshold(s, far)
            found.append(SourceThreshold(name, int(s.size), float(t if bounds is None else np.clip(t, *bounds))))
    if not found:
        raise ValueError("no negative scores to calibrate the 'no artwork' threshold on")
    return ThresholdCalibration(max(s.threshold for s in found), far, tuple(found))


def negative_scores(
    describe: Callable[[Sequence[np.ndarray]], np.ndarray],
    gallery: np.ndarray,
    gallery_labels: Sequence,
    *,
    references: Sequence[np.ndarray],
    reference_labels: Sequence,
    distractors: np.ndarray | None = None,
    generated: int = DEFAULT_GENERATED,
    views_per_reference: int = DEFAULT_VIEWS_PER_REFERENCE,
    seed: int = 0,
    batch: int = 16,
) -> dict[str, np.ndarray]:
    """The top-1 scores of every negative source against ``gallery`` (rows labelled by artwork).

    ``describe`` maps RGB uint8 images to L2-normalised descriptors (the model the threshold is
    for); ``distractors`` are descriptors of the museum's own distractor photos, if any.
    Views are drawn in batches of ``batch`` photos so that memory stays bounded.
    """
    def top1(images: Sequence[np.ndarray], exclude_labels: Sequence | None) -> np.ndarray:
        described = describe(images)
        if exclude_labels is None:
            return similarity(described, gallery).max(axis=1)
        return impostor_scores(described, exclude_labels, gallery, gallery_labels)

    d_top1 = None if distractors is None or not len(distractors) else similarity(distractors, gallery).max(axis=1)
    return negative_top1_scores(top1, references=references, reference_labels=reference_labels,
                                distractor_scores=d_top1, generated=generated,
                                views_per_reference=views_per_reference, seed=seed, batch=batch)


def negative_top1_scores(
    top1_scores: Callable[[Sequence[np.ndarray], Sequence | None], np.ndarray],
    *,
    references: Sequence[np.ndarray],
    reference_labels: Sequence,
    distractor_scores: np.ndarray | None = None,
    generated: int = DEFAULT_GENERATED,
    views_per_reference: int = DEFAULT_VIEWS_PER_REFERENCE,
    seed: int = 0,
    batch: int = 16,
) -> dict[str, np.ndarray]:
    """:func:`negative_scores` for any recogniser, descriptors or not (SIFT's pairwise scores).

    ``top1_scores(images, exclude_labels)`` gives each image's best score over the museum,
    leaving out the artwork ``exclude_labels[i]`` (``exclude_labels`` None: leave out nothing);
    ``distractor_scores`` are the museum's distractors' top-1 scores, if any. The same views
    and generated photos as :func:`negative_scores`, for the same ``seed``. A view with no other
    artwork to score against (``-inf``: a museum of one artwork) is left out, as there.
    """
    from muselens.runtime.data.phone import phone_view
    from muselens.runtime.data.synthetic.museum import non_artwork_photos

    for name, value in (("generated", generated), ("views_per_reference", views_per_reference)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if len(references) != len(reference_labels):
        raise ValueError(f"{len(references)} references but {len(reference_labels)} reference labels")
    out: dict[str, np.ndarray] = {}
    if distractor_scores is not None and len(distractor_scores):
        out[DISTRACTORS] = np.asarray(distractor_scores).reshape(-1)
    if generated:
        out[GENERATED] = np.asarray(top1_scores(non_artwork_photos(generated, seed=seed), None))
    rows = np.arange(len(references))
    if rows.size > MAX_IMPOSTOR_REFERENCES:
        rows = np.sort(np.random.default_rng([seed, 7]).choice(rows, MAX_IMPOSTOR_REFERENCES, replace=False))
    labels = np.asarray(reference_labels)
    parts = []
    for view in range(views_per_reference):
        for start in range(0, rows.size, batch):
            chunk = rows[start:start + batch]
            views = [phone_view(references[i], np.random.default_rng([seed, int(i), view])) for i in chunk]
            parts.append(np.asarray(top1_scores(views, labels[chunk])))
    if parts:
        impostors = np.concatenate(parts)
        out[IMPOSTORS] = impostors[np.isfinite(impostors)]
    return out

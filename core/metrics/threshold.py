"""The "no artwork" threshold, calibrated whether or not the museum has photos of nothing.

A frame must be rejected when it shows no artwork the museum holds. Two kinds of such frames
exist, and a museum rarely has photos of either:

* **no artwork at all** (walls, floors, doorways, visitors): the museum's ``distractors/``
  when it has some, and always muselens's own generated non-artwork photos
  (:func:`~muselens.core.synthetic.museum.non_artwork_photos`);
* **an artwork the museum does not hold**: simulated by phone views
  (:func:`~muselens.core.synthetic.phone.phone_view`) of each reference, scored against every
  artwork *but its own* (leave-one-artwork-out impostors).

Each source is calibrated for ``target_far`` on its own
(:func:`~muselens.core.metrics.open_set.calibrate_threshold`) and the threshold is the
highest of them, so that no source is accepted more often than the target. What each source
gave is kept in :class:`ThresholdCalibration`, which the bundle's manifest records.

The impostor views are a simulation, and where it cannot tell artworks apart at the target
(the same views scored against their *own* artwork, the genuine views, score as high as the
impostors) reaching the target on it would reject most real photos of the museum's artworks:
measured on a real catalogue museum, a threshold at 1 % of impostor views accepted 34 % of
the real queries. That source's threshold is then capped at the equal-error point, where as
many genuine views are rejected as impostor views accepted; the manifest says so. Real
negatives (the museum's distractors) and the generated photos of no artwork are never capped.
"""

from __future__ import annotations

from muselens.core import checks
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from muselens.core.metrics.open_set import _target, calibrate_threshold
from muselens.core.metrics.ranking import similarity

DISTRACTORS = "distractors"
IMPOSTORS = "impostor-views"
GENERATED = "generated-non-artwork"
SOURCES = (DISTRACTORS, IMPOSTORS, GENERATED)
GENUINE = "genuine-views"  # not a source of negatives: the impostor views scored against their own artwork
AT_TARGET_FAR = "target-far"  # a source's rule: the threshold that accepts at most target_far of it
EQUAL_ERROR = "equal-error-with-genuine-views"  # the impostor views' cap (see the module's docstring)
METHOD = "highest-per-source-threshold"  # what calibrate_sources does, as a bundle's manifest records it
DEFAULT_TARGET_FAR = 0.01  # what a bundle ships with unless told otherwise; export and evaluation share it
DEFAULT_GENERATED = 48  # generated non-artwork photos: enough for a 2 % quantile, ~2 s to describe
DEFAULT_VIEWS_PER_REFERENCE = 1
MAX_IMPOSTOR_REFERENCES = 2000  # references viewed at most (a seeded sample beyond): bounds export time


@dataclass(frozen=True)
class SourceThreshold:
    """One source of negatives: how many scores and the threshold they alone would give.

    ``rule`` says how: :data:`AT_TARGET_FAR`, or :data:`EQUAL_ERROR` when the impostor views were
    capped, ``at_target_far`` then keeping what the target alone would have given.
    """

    source: str
    count: int
    threshold: float
    rule: str = AT_TARGET_FAR
    at_target_far: float | None = None

    def __post_init__(self) -> None:
        if self.rule not in (AT_TARGET_FAR, EQUAL_ERROR):
            raise ValueError(f"unknown threshold rule {self.rule!r}; expected {AT_TARGET_FAR!r} or {EQUAL_ERROR!r}")
        if (self.rule == EQUAL_ERROR) != (self.at_target_far is not None):
            raise ValueError(f"at_target_far is recorded exactly when the rule is {EQUAL_ERROR!r}")

    def to_dict(self) -> dict[str, object]:
        """The record; a source at the target has the three keys older bundles have."""
        out: dict[str, object] = {"source": self.source, "count": self.count, "threshold": self.threshold}
        if self.rule != AT_TARGET_FAR:
            out.update(rule=self.rule, at_target_far=self.at_target_far)
        return out

    def describe(self) -> str:
        text = f"{self.source} {self.threshold:.4f} (n={self.count})"
        if self.rule == EQUAL_ERROR:
            text += f" [capped at the equal error with genuine views; at the target {self.at_target_far:.4f}]"
        return text


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
                "sources": [s.to_dict() for s in self.sources]}

    def describe(self) -> str:
        """One line for a person: the value, the target and what each source gave."""
        parts = ", ".join(s.describe() for s in self.sources)
        return f"{self.value:.4f} at FAR {self.target_far:g}, the highest of: {parts}"


def _checked(view_descriptors: np.ndarray, view_labels: Sequence, gallery: np.ndarray,
             gallery_labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    v_labels, g_labels = np.asarray(view_labels), np.asarray(gallery_labels)
    if view_descriptors.ndim != 2 or view_descriptors.shape[0] != v_labels.shape[0]:
        raise ValueError(f"{view_descriptors.shape} view descriptors for {v_labels.shape[0]} labels")
    if gallery.ndim != 2 or gallery.shape[0] != g_labels.shape[0]:
        raise ValueError(f"{gallery.shape} gallery rows for {g_labels.shape[0]} labels")
    return v_labels, g_labels


def split_view_scores(scores: np.ndarray, view_labels: Sequence,
                      column_labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Each view's best score against *another* artwork (impostor) and against its own (genuine).

    ``scores`` is views x gallery columns, any scale. A view with no column of another artwork
    (or of its own) gets ``-inf`` there.
    """
    scores = np.asarray(scores, dtype=np.float64)
    v_labels, c_labels = np.asarray(view_labels), np.asarray(column_labels)
    if scores.shape != (v_labels.shape[0], c_labels.shape[0]):
        raise ValueError(f"{scores.shape} scores for {v_labels.shape[0]} views and {c_labels.shape[0]} columns")
    own = v_labels[:, None] == c_labels[None, :]
    if not scores.shape[1]:
        empty = np.full(scores.shape[0], -np.inf)
        return empty, empty.copy()
    return np.where(own, -np.inf, scores).max(axis=1), np.where(own, scores, -np.inf).max(axis=1)


def impostor_scores(view_descriptors: np.ndarray, view_labels: Sequence, gallery: np.ndarray,
                    gallery_labels: Sequence) -> np.ndarray:
    """Each view's best score against every gallery row of *another* artwork.

    This is what a photo of an artwork absent from the gallery scores: its nearest artwork is
    never itself. A museum of one artwork has no impostors (an empty array).
    """
    v_labels, g_labels = _checked(view_descriptors, view_labels, gallery, gallery_labels)
    if np.unique(g_labels).size < 2 or view_descriptors.shape[0] == 0:
        return np.zeros(0, np.float32)
    return split_view_scores(similarity(view_descriptors, gallery), v_labels, g_labels)[0]


def equal_error_threshold(negatives: np.ndarray, positives: np.ndarray) -> float:
    """The lowest score at which at least as many ``positives`` are rejected (``<=``) as
    ``negatives`` accepted (``>``): where the two error rates cross."""
    neg = np.sort(np.asarray(negatives, dtype=np.float64).reshape(-1))
    pos = np.sort(np.asarray(positives, dtype=np.float64).reshape(-1))
    if not neg.size or not pos.size:
        raise ValueError("the equal-error point needs negative and positive scores")
    candidates = np.unique(np.concatenate([neg, pos]))
    accepted = 1.0 - np.searchsorted(neg, candidates, side="right") / neg.size
    rejected = np.searchsorted(pos, candidates, side="right") / pos.size
    return float(candidates[np.argmax(rejected >= accepted)])  # the top candidate rejects every positive


def calibrate_sources(scores: Mapping[str, np.ndarray], target_far: float) -> ThresholdCalibration:
    """The highest of the per-source thresholds at ``target_far``, clipped to [-1, 1].

    Sources with no score are left out; at least one must have scores. ``scores[GENUINE]``, when
    given, caps the impostor views' threshold at their equal error with it.
    """
    return calibrate_source_scores(scores, target_far, bounds=(-1.0, 1.0))


def calibrate_source_scores(scores: Mapping[str, np.ndarray], target_far: float, *,
                            bounds: tuple[float, float] | None = None) -> ThresholdCalibration:
    """:func:`calibrate_sources` for any score scale: clipped to ``bounds`` only when given.

    Pairwise scores (SIFT's RANSAC inlier counts) are not cosines: clipping them to [-1, 1]
    would accept every frame with two inliers.
    """
    far = _target(target_far)
    unknown = set(scores) - set(SOURCES) - {GENUINE}
    if unknown:
        raise ValueError(f"unknown threshold sources {sorted(unknown)}; expected some of {SOURCES} (and {GENUINE!r})")
    genuine = np.asarray(scores.get(GENUINE, ()), dtype=np.float64).reshape(-1)
    genuine = genuine[np.isfinite(genuine)]

    def clip(t: float) -> float:
        return float(t if bounds is None else np.clip(t, *bounds))

    found = []
    for name in SOURCES:
        s = np.asarray(scores.get(name, ()), dtype=np.float64).reshape(-1)
        if not s.size:
            continue
        t = clip(calibrate_threshold(s, far))
        cap = clip(equal_error_threshold(s, genuine)) if name == IMPOSTORS and genuine.size else t
        found.append(SourceThreshold(name, int(s.size), cap, EQUAL_ERROR, t) if cap < t
                     else SourceThreshold(name, int(s.size), t))
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
    """The top-1 scores of every negative source against ``gallery`` (rows labelled by artwork),
    and of the genuine views (:data:`GENUINE`).

    ``describe`` maps RGB uint8 images to L2-normalised descriptors (the model the threshold is
    for); ``distractors`` are descriptors of the museum's own distractor photos, if any.
    Views are drawn in batches of ``batch`` photos so that memory stays bounded.
    """
    if gallery.ndim != 2 or gallery.shape[0] != len(gallery_labels):
        raise ValueError(f"{gallery.shape} gallery rows for {len(gallery_labels)} labels")
    d_top1 = None if distractors is None or not len(distractors) else similarity(distractors, gallery).max(axis=1)
    return negative_top1_scores(lambda images: similarity(describe(images), gallery), gallery_labels,
                                references=references, reference_labels=reference_labels, distractor_scores=d_top1,
                                generated=generated, views_per_reference=views_per_reference, seed=seed, batch=batch)


def negative_top1_scores(
    score_columns: Callable[[Sequence[np.ndarray]], np.ndarray],
    column_labels: Sequence,
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

    ``score_columns(images)`` scores each image against every column of the museum (gallery
    rows, or references for pairwise scores), labelled by artwork in ``column_labels``;
    ``distractor_scores`` are the museum's distractors' top-1 scores, if any. The same views
    and generated photos as :func:`negative_scores`, for the same ``seed``. A view with no other
    artwork to score against (a museum of one artwork) is left out, as there.
    """
    from muselens.core.synthetic.phone import phone_view
    from muselens.core.synthetic.museum import non_artwork_photos

    for name, value in (("generated", generated), ("views_per_reference", views_per_reference)):
        checks.integer(value, name, low=0)
    if len(references) != len(reference_labels):
        raise ValueError(f"{len(references)} references but {len(reference_labels)} reference labels")
    columns = np.asarray(column_labels)

    def scored(images: Sequence[np.ndarray]) -> np.ndarray:
        out = np.asarray(score_columns(images), dtype=np.float64)
        if out.shape != (len(images), columns.shape[0]):
            raise ValueError(f"score_columns gave {out.shape} scores for {len(images)} images and "
                             f"{columns.shape[0]} columns")
        return out

    out: dict[str, np.ndarray] = {}
    if distractor_scores is not None and len(distractor_scores):
        out[DISTRACTORS] = np.asarray(distractor_scores).reshape(-1)
    if generated and columns.size:
        out[GENERATED] = scored(non_artwork_photos(generated, seed=seed)).max(axis=1)
    rows = np.arange(len(references))
    if rows.size > MAX_IMPOSTOR_REFERENCES:
        rows = np.sort(np.random.default_rng([seed, 7]).choice(rows, MAX_IMPOSTOR_REFERENCES, replace=False))
    labels = np.asarray(reference_labels)
    impostors, genuine = [], []
    for view in range(views_per_reference):
        for start in range(0, rows.size, batch):
            chunk = rows[start:start + batch]
            views = [phone_view(references[i], np.random.default_rng([seed, int(i), view])) for i in chunk]
            imp, gen = split_view_scores(scored(views), labels[chunk], columns)
            impostors.append(imp)
            genuine.append(gen)
    if impostors:
        imp, gen = np.concatenate(impostors), np.concatenate(genuine)
        out[IMPOSTORS] = imp[np.isfinite(imp)]
        out[GENUINE] = gen[np.isfinite(gen)]
    return out

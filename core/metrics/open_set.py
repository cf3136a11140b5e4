"""Open-set recognition: "a known artwork" versus "no artwork" from the top-1 score.

Inputs are top-1 similarity scores of *queries* (images of gallery artworks), whether
their top-1 answer was the right artwork, and top-1 scores of *distractors* (frames
showing no gallery artwork). The recogniser answers its top-1 artwork when
``score > threshold`` (strictly) and "no artwork" otherwise.

Definitions (rates are fractions in [0, 1]):

* FAR, false-accept rate: fraction of distractors accepted (``score > threshold``).
* correct-accept rate (CAR): fraction of queries accepted *and* top-1 correct.
* accuracy: open-set accuracy over queries and distractors together, where a query is
  right if accepted with the correct top-1 and a distractor is right if rejected:
  ``(n_queries * CAR + n_distractors * (1 - FAR)) / (n_queries + n_distractors)``.
  It depends on the query/distractor mix, so CAR and FAR are reported beside it.
* AUROC: queries (positives, correct or not) versus distractors by top-1 score.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from muselens.core import checks

_FLOOR_SLACK = 1e-9  # 0.29 * 100 == 28.999999999999996 must still allow 29 accepts


def _target(target_far: float) -> float:
    return checks.number(target_far, "target_far", low=0, high=1, high_open=True)


def calibrate_threshold(distractor_scores: np.ndarray, target_far: float) -> float:
    """Smallest threshold at which at most ``target_far`` of the distractors are accepted.

    With ``a = floor(target_far * n)`` allowed accepts, the threshold is the (a+1)-th
    largest distractor score: strictly greater scores (at most ``a``) are accepted, and
    any lower threshold would accept ``a + 1``. Ties at the threshold are rejected, so
    the achieved FAR may be below the target.
    """
    d = checks.float_array(distractor_scores, "distractor_scores", 1)
    allowed = math.floor(_target(target_far) * d.shape[0] + _FLOOR_SLACK)
    return float(np.sort(d)[::-1][allowed])


@dataclass(frozen=True)
class OperatingPoint:
    """The recogniser's behaviour at the threshold calibrated for ``target_far``."""

    target_far: float
    threshold: float
    far: float
    correct_accept_rate: float
    accuracy: float


@dataclass(frozen=True)
class OpenSetReport:
    auroc: float
    closed_set_accuracy: float  # fraction of queries whose top-1 is correct (no rejection)
    n_queries: int
    n_distractors: int
    operating_points: tuple[OperatingPoint, ...]

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"operating_points": [asdict(p) for p in self.operating_points]}


def _inputs(
    query_scores: object, query_correct: object, distractor_scores: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = checks.float_array(query_scores, "query_scores", 1)
    ok = checks.bool_vector(query_correct, "query_correct", q.shape[0])
    d = checks.float_array(distractor_scores, "distractor_scores", 1)
    return q, ok, d


def open_set_curve(
    query_scores: np.ndarray, query_correct: np.ndarray, distractor_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, far, correct_accept_rate)`` at -inf and every distinct score, ascending."""
    q, ok, d = _inputs(query_scores, query_correct, distractor_scores)
    thresholds = np.concatenate([[-np.inf], np.unique(np.concatenate([q, d]).astype(np.float64))])
    d_sorted, good_sorted = np.sort(d), np.sort(q[ok])
    far = (d.shape[0] - np.searchsorted(d_sorted, thresholds, side="right")) / d.shape[0]
    car = (good_sorted.shape[0] - np.searchsorted(good_sorted, thresholds, side="right")) / q.shape[0]
    return thresholds, far, car


def operating_point(
    query_scores: np.ndarray, query_correct: np.ndarray, distractor_scores: np.ndarray, target_far: float
) -> OperatingPoint:
    """Calibrate on the distractors for ``target_far`` and measure FAR, CAR and accuracy there."""
    q, ok, d = _inputs(query_scores, query_correct, distractor_scores)
    t = calibrate_threshold(d, target_far)
    far = float(np.mean(d > t))
    car = float(np.mean((q > t) & ok))
    accuracy = (q.shape[0] * car + d.shape[0] * (1.0 - far)) / (q.shape[0] + d.shape[0])
    return OperatingPoint(float(target_far), t, far, car, float(accuracy))


def evaluate_open_set(
    query_scores: np.ndarray,
    query_correct: np.ndarray,
    distractor_scores: np.ndarray,
    target_fars: tuple[float, ...] = (0.01, 0.05),
) -> OpenSetReport:
    """AUROC of queries vs distractors and the operating points at each target FAR."""
    from sklearn.metrics import roc_auc_score

    q, ok, d = _inputs(query_scores, query_correct, distractor_scores)
    truth = np.concatenate([np.ones(q.shape[0], bool), np.zeros(d.shape[0], bool)])
    auroc = float(roc_auc_score(truth, np.concatenate([q, d]).astype(np.float64)))
    points = tuple(operating_point(q, ok, d, f) for f in target_fars)
    return OpenSetReport(auroc, float(ok.mean()), int(q.shape[0]), int(d.shape[0]), points)

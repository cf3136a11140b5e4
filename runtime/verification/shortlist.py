"""Which artwork of a shortlist does the frame show? Each candidate's references fitted into it.

The global descriptor ranks every artwork in microseconds; this checks the first few
geometrically (:func:`~muselens.runtime.verification.geometry.verify`). An artwork is tried
through its references most similar to the frame (``references_per_artwork`` of them, by the
global descriptor, or by the frame's keypoints' votes where the index of :mod:`.voting` is
built), the frame's local features extracted once.

The answer is the candidate of most evidence: its descriptor score plus, when it fits,
``weight * ln(1 + inliers)`` (:func:`evidence`). How much a fit weighs against the descriptor
depends on the museum, so the export measures it on the museum's own queries
(:mod:`muselens.export.evidence_weight`) and the manifest carries it. The inlier count alone
misleads where artworks share most of their look: grey-level keypoints do not see colour, so a
blueberry and a vanilla yoghurt of one brand fit each other's photos, and on grocery-packaged
"most inliers" named the wrong flavour for 17 % of the photos; there the descriptor, trained on
the museum, should decide between two fits (weight 0.03: mP@1 91.5 served, against 86.2 with
any fit first). A weak descriptor, as the demo's (trained in minutes on a synthetic museum),
ranks "hub" artworks first on frames of others, and a fit must outweigh it (the artwork in view
fitted while a hub was answered on 32 of the walk's frames at 0.03). Measured per query against
the global top 5, mP@1 descriptor / most inliers / weight 0.03: mcv-paintings 98.4 / 100 / 100,
ukbench-250 99.4 / 99.8 / 100, grocery-packaged 90.3 / 79.1 / 90.8. The report keeps the best
other candidate's evidence, fitted or not, and the decision is "uncertain" when it comes close.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from muselens.core import checks
from muselens.runtime.verification.features import FeatureConfig, LocalFeatures, extract_features
from muselens.runtime.verification.geometry import Verification, VerifyConfig, verify
from muselens.runtime.verification.store import LocalFeatureStore
from muselens.runtime.verification.voting import LocalVoter, artwork_votes, top_voted

log = logging.getLogger(__name__)

DEFAULT_SHORTLIST = 5  # artworks of the global ranking verified (mcv-paintings: the right one is in the top 5)
DEFAULT_REFERENCES_PER_ARTWORK = 2
INLIER_WEIGHT = 0.03  # evidence of a fit, in descriptor-score units per e-fold of inliers
# A candidate whose references it tried hold at least this many keypoints would fit a frame that
# shows it sharply: one that does not, while another artwork fits the same frame, is not in view.
# A plainer artwork (a monochrome canvas) may fail to fit where it hangs: its absence of a fit
# says nothing.
FITTABLE_KEYPOINTS = 300


EVIDENCE_WEIGHTS = (0.01, 0.03, 0.1, 0.3, 1.0)  # the weights an export chooses from on the museum's queries


def evidence(score: float, inliers: int, weight: float = INLIER_WEIGHT) -> float:
    """A candidate's combined evidence: its descriptor score, plus the fit's when it was verified."""
    return float(score) + (weight * math.log1p(inliers) if inliers > 0 else 0.0)

# Verification states, as the service reports them.
VERIFIED = "verified"  # a reference of the answer fits the frame by a plausible homography
NOT_VERIFIED = "not_verified"  # checked: no candidate fits (not evidence of absence: a plain artwork has few features)
NOT_REQUESTED = "not_requested"
UNAVAILABLE = "unavailable"  # asked for, but the bundle has no local features
DEFERRED = "deferred"  # asked for, but this client uses more than its share of a busy server
STATES = (VERIFIED, NOT_VERIFIED, NOT_REQUESTED, UNAVAILABLE, DEFERRED)


@dataclass(frozen=True)
class PlacedArtwork:
    """An artwork that fitted somewhere in the frame, at its centre or not: where (its best
    reference's outline, normalised to the frame) and on how much evidence (:func:`evidence`).
    A stream carries these from frame to frame (:mod:`muselens.runtime.streams.outline_tracking`):
    a neighbour fitted at the edge of one frame is the artwork at the centre a few frames later."""

    inliers: int
    evidence: float
    outline: np.ndarray  # (4, 2) normalised to the frame, clockwise from the reference's top-left


@dataclass(frozen=True)
class VerificationReport:
    """What geometric verification found for one frame.

    ``outline`` (4, 2): the verified reference's corners in the frame, clockwise from its
    top-left, normalised to the frame; ``pairs`` (n, 4): the inlier matches as frame x, y and
    reference x, y, each normalised to its image (only when asked for, e.g. to draw them).
    """

    state: str  # of the answer: VERIFIED when it is the candidate of most evidence and it fits
    instance_id: str | None = None
    reference_row: int | None = None
    inliers: int = 0
    matches: int = 0
    runner_up_inliers: int = 0
    candidates: int = 0  # references fitted
    outline: np.ndarray | None = None
    pairs: np.ndarray | None = None
    ms: float = 0.0
    inliers_by_artwork: Mapping[str, int] = field(default_factory=dict)  # every candidate that fitted
    evidence: float = 0.0  # the answer's combined evidence (:func:`evidence`)
    runner_up_evidence: float = -math.inf  # the best other candidate's, verified or not
    voted: tuple[str, ...] = ()  # candidates the local-feature vote added to the descriptor's shortlist
    placed: Mapping[str, PlacedArtwork] = field(default_factory=dict)  # every candidate that fitted anywhere
    # candidates tried that fitted nowhere though their references hold keypoints enough to fit
    # (:data:`FITTABLE_KEYPOINTS`): where ``placed`` is not empty, the frame was sharp enough to fit
    # artworks, and these are not in view (a stream stops showing them from their scores)
    unfitted: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown verification state {self.state!r}; expected one of {STATES}")
        if (self.state == VERIFIED) != (self.instance_id is not None):
            raise ValueError("a verified report names its artwork, and only a verified one does")

    @property
    def verified(self) -> bool:
        return self.state == VERIFIED


NOT_ASKED = VerificationReport(NOT_REQUESTED)
NO_FEATURES = VerificationReport(UNAVAILABLE)
OVER_SHARE = VerificationReport(DEFERRED)


def holds_centre(outline: np.ndarray, size: tuple[float, float] = (1.0, 1.0)) -> bool:
    """Whether the fitted outline holds the centre of a frame of ``size`` (width, height; the default:
    a normalised outline): the artwork a visitor points the camera at.

    A neighbour at the edge of the frame fits too, but it is not what is asked about: on the demo's
    walk (every reference fitted, most inliers answered), 8 of 100 frames named the wrong artwork,
    a neighbour; keeping only outlines over the centre, none did, and 79 were right against 78."""
    return cv2.pointPolygonTest(np.asarray(outline, np.float32).reshape(-1, 1, 2),
                                (size[0] / 2.0, size[1] / 2.0), False) >= 0


def _voter(store: LocalFeatureStore, features: FeatureConfig, row_ids: np.ndarray,
           index: bytes | np.ndarray | None) -> LocalVoter:
    """The bundle's vote index when it loads, else one built from ``store`` (seconds to minutes)."""
    if index is not None:
        try:
            return LocalVoter(store, features, row_ids, index_bytes=index)
        except ValueError as exc:
            log.warning("the bundle's vote index does not load (%s); rebuilding it from %d local descriptors",
                        exc, len(store.descriptors))
    return LocalVoter(store, features, row_ids)


class ShortlistVerifier:
    """The references' local features (one block per gallery row) and how to fit them."""

    def __init__(self, store: LocalFeatureStore, features: FeatureConfig, row_ids: Sequence[str], *,
                 config: VerifyConfig = VerifyConfig(), references_per_artwork: int = DEFAULT_REFERENCES_PER_ARTWORK,
                 vote: bool = True, evidence_weight: float = INLIER_WEIGHT,
                 vote_index: bytes | np.ndarray | None = None, voter: LocalVoter | None = None):
        """``vote_index`` is the bundle's built vote index (:meth:`LocalVoter.to_bytes`); one that does
        not load (another faiss's format, or not of these features) is logged and rebuilt. ``voter``
        is one already built for exactly this store (an enrolment's copy)."""
        if len(store) != len(row_ids):
            raise ValueError(f"{len(store)} references' local features for {len(row_ids)} gallery rows")
        if not isinstance(features, FeatureConfig) or not isinstance(config, VerifyConfig):
            raise TypeError("features must be a FeatureConfig and config a VerifyConfig")
        self.store = store
        self.features = features
        self.config = config
        self.row_ids = np.asarray(row_ids, dtype=str)
        self.references_per_artwork = int(references_per_artwork)
        weight = checks.number(evidence_weight, "evidence_weight", low=0, low_open=True)
        if not math.isfinite(weight):
            raise ValueError(f"evidence_weight must be a finite number > 0, got {evidence_weight!r}")
        self.evidence_weight = weight
        self.voter = None
        if vote and len(store):
            self.voter = voter if voter is not None else _voter(store, features, self.row_ids, vote_index)

    def __len__(self) -> int:
        return len(self.store)

    def state_bytes(self) -> dict[str, int]:
        """Bytes of the references' local features and of the vote index over them."""
        return {"local_features": self.store.nbytes + self.row_ids.nbytes,
                "vote_index": self.voter.nbytes if self.voter is not None else 0}

    def frame_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` a frame's features are found at: its long side brought to the
        configuration's frame size (a smaller frame is enlarged to it, so needs all its pixels)."""
        scale = self.features.frame_max_side / max(height, width)
        if scale >= 1.0:
            return height, width
        return max(1, round(height * scale)), max(1, round(width * scale))

    def frame_features(self, image: np.ndarray) -> LocalFeatures:
        """The frame's local features (RGB uint8, any size), at the configuration's frame size."""
        return extract_features(image, self.features, frame=True)

    def extended(self, images: Sequence[np.ndarray], instance_id: str) -> ShortlistVerifier:
        """A new verifier with ``images`` appended as gallery rows of ``instance_id`` (enrolment)."""
        store = self.store.extend([extract_features(image, self.features) for image in images])
        ids = np.concatenate([self.row_ids, np.full(len(images), instance_id)])
        voter = self.voter.extended(store, ids) if self.voter is not None else None
        return ShortlistVerifier(store, self.features, ids, config=self.config,
                                 references_per_artwork=self.references_per_artwork, vote=self.voter is not None,
                                 evidence_weight=self.evidence_weight, voter=voter)

    def row_votes(self, frame: LocalFeatures) -> np.ndarray | None:
        """The frame's keypoints' votes per reference (None without a voter), searched on the
        calling thread's OpenMP threads (the caller sets them: ``voting.omp_threads``)."""
        return self.voter.row_votes(frame) if self.voter is not None else None

    def voted(self, row_votes: np.ndarray | None, shortlist: Sequence[str]) -> list[str]:
        """Artworks the frame's keypoints vote for that ``shortlist`` lacks (none without votes)."""
        return [] if row_votes is None else top_voted(artwork_votes(self.row_ids, row_votes), exclude=shortlist)

    def verify(self, frame: LocalFeatures, candidates: Sequence[tuple], *,
               keep_pairs: bool = False, check: Callable[[], None] | None = None) -> VerificationReport:
        """Fit each candidate artwork ``(instance_id, descriptor score, gallery rows most similar first)``
        into the frame; the answer is the candidate of the highest combined evidence, verified if it fits
        (``NOT_VERIFIED`` when it does not, whatever the others' fits: they are listed). A candidate
        may carry a fourth item, the score its evidence starts from if it fits (a part of the frame's
        score: the fit says where that part is).

        ``check`` is called before each fit (a cancelled call raises there).
        """
        started = time.perf_counter()
        fits: dict[str, tuple[int, Verification]] = {}  # artwork -> its best-fitting reference over the centre
        anywhere: dict[str, Verification] = {}  # artwork -> its best-fitting reference anywhere in the frame
        fitted = 0
        keypoints: dict[str, int] = {}  # artwork -> the most keypoints of a reference of it tried
        for instance_id, _, rows, *_ in candidates:
            for row in list(rows)[:self.references_per_artwork]:
                keypoints[instance_id] = max(keypoints.get(instance_id, 0), self.store.count(int(row)))
                if check is not None:
                    check()
                result = verify(frame, self.store.features(int(row)), self.features.norm, self.config,
                                keep_pairs=keep_pairs)
                fitted += 1
                if not result.verified(self.config):
                    continue
                if instance_id not in anywhere or result.inliers > anywhere[instance_id].inliers:
                    anywhere[instance_id] = result
                if holds_centre(result.outline, frame.size) and (
                        instance_id not in fits or result.inliers > fits[instance_id][1].inliers):
                    fits[instance_id] = (int(row), result)
        ms = (time.perf_counter() - started) * 1e3
        width, height = frame.size
        scale = np.array([width, height], np.float32)

        def start(c: tuple) -> float:  # the score a fitted candidate's evidence starts from
            return max(c[1], c[3]) if len(c) > 3 else c[1]

        placed = {c[0]: PlacedArtwork(anywhere[c[0]].inliers,
                                      evidence(start(c), anywhere[c[0]].inliers, self.evidence_weight),
                                      (anywhere[c[0]].outline / scale).astype(np.float32))
                  for c in candidates if c[0] in anywhere}
        unfitted = tuple(iid for iid, n in keypoints.items() if iid not in anywhere and n >= FITTABLE_KEYPOINTS)
        if not fits:
            return VerificationReport(NOT_VERIFIED, candidates=fitted, ms=ms, placed=placed, unfitted=unfitted)
        combined = {c[0]: evidence(start(c) if c[0] in fits else c[1],
                                   fits[c[0]][1].inliers if c[0] in fits else 0, self.evidence_weight)
                    for c in candidates}
        inliers = {iid: fit.inliers for iid, (_, fit) in fits.items()}
        instance_id = max(combined, key=lambda iid: (combined[iid], iid in fits))
        if instance_id not in fits:  # a descriptor score beyond any fit's evidence: the answer is not verified
            return VerificationReport(NOT_VERIFIED, candidates=fitted, ms=ms, inliers_by_artwork=inliers,
                                      placed=placed, unfitted=unfitted)
        row, result = fits[instance_id]
        runner_up = max((n[1].inliers for iid, n in fits.items() if iid != instance_id), default=0)
        runner_up_evidence = max((e for iid, e in combined.items() if iid != instance_id), default=-math.inf)
        outline = (result.outline / scale).astype(np.float32)
        pairs = None
        if keep_pairs and result.pairs is not None:
            ref_w, ref_h = (float(v) for v in self.store.sizes[row])
            pairs = (result.pairs / np.array([width, height, ref_w, ref_h], np.float32)).astype(np.float32)
        return VerificationReport(VERIFIED, instance_id, row, result.inliers, result.matches, runner_up, fitted,
                                  outline, pairs, ms, inliers, combined[instance_id], runner_up_evidence,
                                  placed=placed, unfitted=unfitted)

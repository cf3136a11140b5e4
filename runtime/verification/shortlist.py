"""Which artwork of a shortlist does the frame show? Each candidate's references fitted into it.

The global descriptor ranks every artwork in microseconds; this checks the first few
geometrically (:func:`~muselens.runtime.verification.geometry.verify`). An artwork is tried
through its references most similar to the frame (``references_per_artwork`` of them, by the
global descriptor), the frame's local features extracted once. The artwork whose reference
fits with the most inliers is the verified answer; the report keeps the runner-up's inliers
so that a frame straddling two artworks that both fit can be called too close.

Coordinates leave here normalised (0..1 of the frame's width and height, and of the
reference photo's for keypoint pairs), the form the API and the overlays use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from muselens.runtime.verification.features import FeatureConfig, LocalFeatures, extract_features
from muselens.runtime.verification.geometry import Verification, VerifyConfig, verify
from muselens.runtime.verification.store import LocalFeatureStore

DEFAULT_SHORTLIST = 5  # artworks of the global ranking verified (mcv-paintings: the right one is in the top 5)
DEFAULT_REFERENCES_PER_ARTWORK = 2

# Verification states, as the service reports them.
VERIFIED = "verified"  # a reference of the answer fits the frame by a plausible homography
NOT_VERIFIED = "not_verified"  # checked: no candidate fits (not evidence of absence: a plain artwork has few features)
NOT_REQUESTED = "not_requested"
UNAVAILABLE = "unavailable"  # asked for, but the bundle has no local features
STATES = (VERIFIED, NOT_VERIFIED, NOT_REQUESTED, UNAVAILABLE)


@dataclass(frozen=True)
class VerificationReport:
    """What geometric verification found for one frame.

    ``outline`` (4, 2): the verified reference's corners in the frame, clockwise from its
    top-left, normalised to the frame; ``pairs`` (n, 4): the inlier matches as frame x, y and
    reference x, y, each normalised to its image (only when asked for, e.g. to draw them).
    """

    state: str
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


class ShortlistVerifier:
    """The references' local features (one block per gallery row) and how to fit them."""

    def __init__(self, store: LocalFeatureStore, features: FeatureConfig, row_ids: Sequence[str], *,
                 config: VerifyConfig = VerifyConfig(), references_per_artwork: int = DEFAULT_REFERENCES_PER_ARTWORK):
        if len(store) != len(row_ids):
            raise ValueError(f"{len(store)} references' local features for {len(row_ids)} gallery rows")
        if not isinstance(features, FeatureConfig) or not isinstance(config, VerifyConfig):
            raise TypeError("features must be a FeatureConfig and config a VerifyConfig")
        self.store = store
        self.features = features
        self.config = config
        self.row_ids = np.asarray(row_ids, dtype=str)
        self.references_per_artwork = int(references_per_artwork)

    def __len__(self) -> int:
        return len(self.store)

    def frame_features(self, image: np.ndarray) -> LocalFeatures:
        """The frame's local features (RGB uint8, any size), extracted as the references' were."""
        return extract_features(image, self.features)

    def extended(self, images: Sequence[np.ndarray], instance_id: str) -> ShortlistVerifier:
        """A new verifier with ``images`` appended as gallery rows of ``instance_id`` (enrolment)."""
        store = self.store.extend([self.frame_features(image) for image in images])
        ids = np.concatenate([self.row_ids, np.full(len(images), instance_id)])
        return ShortlistVerifier(store, self.features, ids, config=self.config,
                                 references_per_artwork=self.references_per_artwork)

    def verify(self, frame: LocalFeatures, candidates: Sequence[tuple[str, Sequence[int]]], *,
               keep_pairs: bool = False, check: Callable[[], None] | None = None) -> VerificationReport:
        """Fit each candidate artwork's references (gallery rows, most similar first) into the frame.

        ``check`` is called before each fit (a cancelled call raises there).
        """
        started = time.perf_counter()
        best: tuple[str, int, Verification] | None = None
        inliers_by_artwork: dict[str, int] = {}
        fitted = 0
        for instance_id, rows in candidates:
            for row in list(rows)[:self.references_per_artwork]:
                if check is not None:
                    check()
                reference = self.store.features(int(row))
                result = verify(frame, reference, self.features.norm, self.config, keep_pairs=keep_pairs)
                fitted += 1
                if not result.verified(self.config):
                    continue
                inliers_by_artwork[instance_id] = max(inliers_by_artwork.get(instance_id, 0), result.inliers)
                if best is None or result.inliers > best[2].inliers:
                    best = (instance_id, int(row), result)
        ms = (time.perf_counter() - started) * 1e3
        if best is None:
            return VerificationReport(NOT_VERIFIED, candidates=fitted, ms=ms)
        instance_id, row, result = best
        runner_up = max((n for iid, n in inliers_by_artwork.items() if iid != instance_id), default=0)
        width, height = frame.size
        outline = (result.outline / np.array([width, height], np.float32)).astype(np.float32)
        pairs = None
        if keep_pairs and result.pairs is not None:
            ref_w, ref_h = (float(v) for v in self.store.sizes[row])
            pairs = (result.pairs / np.array([width, height, ref_w, ref_h], np.float32)).astype(np.float32)
        return VerificationReport(VERIFIED, instance_id, row, result.inliers, result.matches, runner_up, fitted,
                                  outline, pairs, ms, inliers_by_artwork)

"""Where the verified artworks are now: their outlines carried from the verified frame by the camera's motion.

A stream's verification answers a frame some 100 ms (an idle box) to 500 ms (a busy one) after it
arrived, and says where each fitted artwork was *in that frame*. A visitor's camera keeps moving:
by the time the answer is back, the artwork it named may have left the centre, and the neighbour
it fitted at the edge may have come into it. Read as it is, the answer lags every turn of the
camera. Here each frame's motion against the one before is estimated from sparse optical flow
on a small grey copy (Lucas-Kanade on 100 corners of an image about 160 pixels wide, a similarity
fitted by RANSAC: 0.5 ms a frame at 320 on one core: grey copy 0.14, corners 0.10, flow 0.19 with
an 11-pixel window over 3 levels, 0.62 with 15 pixels and the same accuracy), the motions are
chained, and every artwork fitted in the last few verifications is carried into the current frame. The artwork whose carried outline holds the
frame's centre is the one in view; if none does, the camera has moved off the verified artworks.

Measured on the demo's walk (10 FPS, 300 frames, every frame's fits computed offline, a
verification's answer read one frame after its frame): the newest verification's answer read as
it is was right on 262, 262 and 248 frames with every frame, every second and every fifth frame
verified; carried by this tracker, 278, 273 and 263. An outline carried 10 frames is off by 16 px
on a 640-pixel frame (85 px not carried); phase correlation (translation only) was off by 28 px,
which is why a similarity is fitted. Outlines older than the window are dropped: the carried
error grows with age, and with a 1 s window the walk was right on 269 frames instead of 278. So
is everything before a frame whose motion cannot be estimated (a blank wall, a cut).

Verification also says what is *not* in view: an artwork it tried on a frame where others fitted
(the frame was sharp enough), whose references hold keypoints enough to fit
(:data:`~muselens.runtime.verification.shortlist.FITTABLE_KEYPOINTS`), and that fitted nowhere.
For the window, a stream shows none of those from its scores: a weak descriptor's favourite
("hub") artwork scores high on bare wall beside a fitted neighbour. Streaming the demo's walk
through the server (the same bundle, quiet 2-core machine, one run each): shown right on 83.3 and
88.3 % of frames before this module, 90.3 and 89.0 % with outlines carried, 90.3, 92.7, 91.0 and
90.7 % with outlines carried and artworks not in view refuted.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from muselens.core import checks
from muselens.runtime.verification.shortlist import holds_centre

TRACK_WIDTH = 160  # pixels of the grey copy the motion is estimated on
MAX_CORNERS = 100
CORNER_QUALITY = 0.003  # of the strongest corner: a bare wall with an artwork at its edge still gives 40
# Consecutive frames of one camera move little: 10 flow iterations and 200 RANSAC draws find their
# motion (the walk's answers are the same as with OpenCV's 30 and 2,000), and two unrelated frames
# (a cut) give up sooner: 0.65 ms a frame instead of 1.0 on the latency bench's frames.
FLOW_STOP = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 10, 0.03)
RANSAC_ITERATIONS = 200
MIN_TRACKED = 8  # corners followed to the next frame: fewer, and the motion is unknown
RANSAC_PX = 0.5  # a corner farther than this from the fitted motion, in the grey copy's pixels, is an outlier
KEPT_FRAMES = 128  # frames whose chained motion is remembered (about 4 s at 30 FPS)
MIN_WINDOW_S = 0.45  # outlines are carried at most this long (or 1.25 verification intervals, if longer)
WINDOW_INTERVALS = 1.25


class Placed(Protocol):
    """What a verification says of one fitted artwork
    (:class:`~muselens.runtime.verification.shortlist.PlacedArtwork`)."""

    inliers: int
    evidence: float
    outline: np.ndarray  # (4, 2), normalised to its frame


@dataclass(frozen=True)
class CarriedArtwork:
    """A fitted artwork carried into the current frame."""

    instance_id: str
    evidence: float
    inliers: int
    outline: np.ndarray  # (4, 2), normalised to the current frame
    age_s: float  # since the verified frame arrived


@dataclass(frozen=True)
class InView:
    """What the carried outlines say of the current frame: ``centre`` is the artwork held at its
    centre (None: the camera is off every verified artwork), ``carried`` all of them."""

    centre: CarriedArtwork | None
    carried: tuple[CarriedArtwork, ...]
    not_in_view: frozenset[str] = frozenset()  # tried in a recent frame where others fitted, and fitted nowhere


def _grey(rgb: np.ndarray, width: int) -> np.ndarray:
    """A grey copy about ``width`` wide, shrunk by a whole factor (OpenCV's fast path: 0.05 ms
    against 0.8 ms for the same size at any factor, on a 796 x 448 frame)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    h, w = grey.shape
    k = max(1, round(w / width))
    if k == 1 or h < k:
        return np.ascontiguousarray(grey)
    return cv2.resize(grey[:h // k * k, :w // k * k], None, fx=1 / k, fy=1 / k, interpolation=cv2.INTER_AREA)


def _motion(previous: np.ndarray, current: np.ndarray) -> np.ndarray | None:
    """The 3x3 similarity taking ``previous``'s normalised coordinates to ``current``'s, or None."""
    corners = cv2.goodFeaturesToTrack(previous, MAX_CORNERS, CORNER_QUALITY, 5)
    if corners is None or len(corners) < MIN_TRACKED:
        return None
    moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, corners, None, winSize=(11, 11), maxLevel=2,
                                                criteria=FLOW_STOP)
    kept = status.ravel() == 1
    if kept.sum() < MIN_TRACKED:
        return None
    similarity, inliers = cv2.estimateAffinePartial2D(corners[kept], moved[kept], method=cv2.RANSAC,
                                                      ransacReprojThreshold=RANSAC_PX, maxIters=RANSAC_ITERATIONS)
    if similarity is None or inliers is None or int(inliers.sum()) < MIN_TRACKED:
        return None
    h, w = previous.shape
    to_pixels = np.diag([w, h, 1.0])
    return np.linalg.inv(to_pixels) @ np.vstack([similarity, [0.0, 0.0, 1.0]]) @ to_pixels


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    moved = np.c_[points, np.ones(len(points))] @ transform.T
    return (moved[:, :2] / moved[:, 2:]).astype(np.float32)


class OutlineTracker:
    """One stream's camera motion and its verified artworks' outlines; frames are keyed by their
    arrival time (``time.perf_counter()``, unique and increasing within a stream; a client's frame
    ids may repeat). Not thread-safe: a stream's worker calls it, in frame order."""

    def __init__(self, width: int = TRACK_WIDTH, min_window_s: float = MIN_WINDOW_S):
        self.width = checks.integer(width, "tracking width", low=16)
        self.min_window_s = checks.number(min_window_s, "tracking window", low=0)
        self._previous: np.ndarray | None = None
        self._chain = 0  # a frame whose motion is unknown starts a new chain
        self._frames: OrderedDict[float, tuple[int, np.ndarray]] = OrderedDict()  # key -> (chain, from its start)
        self._fits: dict[str, tuple[float, Placed]] = {}  # artwork -> (its verified frame's key, the fit)
        self._absent: dict[str, float] = {}  # artwork -> key of the frame that showed it is not in view

    def observe(self, key: float, rgb: np.ndarray) -> None:
        """A new frame of the stream (RGB, any size): chain its motion against the frame before."""
        grey = _grey(rgb, self.width)
        motion = None
        if self._previous is not None and self._previous.shape == grey.shape:
            try:
                motion = _motion(self._previous, grey)
            except cv2.error:  # a frame too small to follow (a few pixels): its motion is unknown
                motion = None
        if motion is None or not self._frames:
            self._chain += 1
            position = np.eye(3)
        else:
            position = motion @ next(reversed(self._frames.values()))[1]
        self._frames[key] = (self._chain, position)
        while len(self._frames) > KEPT_FRAMES:
            self._frames.popitem(last=False)
        self._previous = grey

    def verified(self, key: float, placed: Mapping[str, Placed], unfitted: Iterable[str] = ()) -> None:
        """The verification of the frame that arrived at ``key``: where each fitted artwork was.
        An artwork it fitted replaces an older fit of itself; the others' older fits stay (until
        the window ends): a verification that misses a blurred frame's artwork does not erase it.
        ``unfitted``: artworks it tried that fitted nowhere though they could; when others fitted
        the same frame (it was sharp enough), they are not in view, until a newer frame fits them."""
        if key not in self._frames:
            return  # a frame this tracker never saw (a new bundle's tracker, or too old)
        for instance_id, fit in placed.items():
            if instance_id not in self._fits or self._fits[instance_id][0] <= key:
                self._fits[instance_id] = (key, fit)
            if self._absent.get(instance_id, -math.inf) <= key:
                self._absent.pop(instance_id, None)
        if placed:
            for instance_id in unfitted:
                if self._fits.get(instance_id, (-math.inf,))[0] < key:
                    self._absent[instance_id] = max(key, self._absent.get(instance_id, -math.inf))

    def in_view(self, key: float, interval_s: float = 0.0) -> InView | None:
        """The artworks fitted within the window, carried into the frame of ``key``; None when there
        are none (or the frame was not observed): nothing is known beyond the scores."""
        if key not in self._frames:
            return None
        window = max(self.min_window_s, WINDOW_INTERVALS * interval_s)
        for instance_id in [i for i, at in self._absent.items() if key - at > window]:
            del self._absent[instance_id]
        chain, position = self._frames[key]
        carried = []
        for instance_id, (verified_at, fit) in list(self._fits.items()):
            source = self._frames.get(verified_at)
            if source is None or source[0] != chain or key - verified_at > window:
                del self._fits[instance_id]  # too old, or the motion since is unknown: it cannot be carried
                continue
            to_now = position @ np.linalg.inv(source[1])
            carried.append(CarriedArtwork(instance_id, float(fit.evidence), int(fit.inliers),
                                          _apply(to_now, np.asarray(fit.outline, np.float64)), key - verified_at))
        if not carried:
            return None
        at_centre = [c for c in carried if holds_centre(c.outline)]
        centre = max(at_centre, key=lambda c: (c.evidence, c.inliers, c.instance_id), default=None)
        return InView(centre, tuple(carried), frozenset(self._absent))

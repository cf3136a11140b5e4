"""Geometric verification off a stream's critical path: the newest frame, in the background, on a budget.

Every frame of a stream is answered from the descriptor path (tens of milliseconds).
Verification costs more (local features, a few homography fits) and would halve the frame rate
if every frame paid for it, so a stream hands its newest frame to a shared
:class:`VerificationPool` at most every ``interval_s``, only while its previous one is done,
and only while the pool has room. The answer of a verified frame reaches the stream's smoother
with the next frame (:meth:`~muselens.runtime.streams.StreamSmoother.confirm`), which shows the
verified artwork at once: verification confirms the smoothed answer or corrects it.

The interval is the budget: a verification costs some 50 ms of one core (mcv-paintings, ORB,
voting and fits), so at the default 0.5 s it takes about 5 % of a 2-core box. A stream whose
frames take less than half their period (a camera at 10 FPS on a box that answers in 30 ms)
leaves the cores idle most of the time, and is verified every 0.1 s instead, without the pool's
rest (below): the idle cores are what it uses. On the demo's walk (10 FPS, 2 cores, the same
bundle, two runs each) the shown answer was right on 84.2 % of frames with such a stream verified
every 0.2 s and resting, 85.7 % every 0.2 s, 85.5 % without rest, and 87.8 % every 0.1 s without
rest (146 verifications in 30 s against 82; the frames' end-to-end p50 44 -> 46 ms). A busier
stream makes itself busy again (its frames take longer), and is back on the budget. The pool's threads
run at normal priority. Measured on 2 cores (bench latency, closed-loop stream at short side 448,
verification every 0.5 s): at normal priority the stream's p50 was 1.25x bare inference and a
verification reached the stream 197 ms after its frame (263 at most); at ``nice`` 10 the job
spread over more frames (1.36x, 325 ms); in Linux's ``SCHED_IDLE`` class it starved (2
verifications in 6 s, 2 s late), since a stream at full rate leaves 2 cores no idle time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from muselens.core import checks
from muselens.runtime.engine.activity import ACTIVITY
from muselens.runtime.engine.gate import CLIENT_USE, fair_share
from muselens.runtime.recognition.served_model import ServedModel
from muselens.runtime.verification import VerificationReport

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.5  # a busy stream's frames verified at most twice a second
IDLE_INTERVAL_S = 0.1  # ... and a stream that leaves the box idle most of the time, ten times (no rest)
# A frame that comes up to this share of the interval early counts as on time: frames arrive with
# jitter, and a 10 FPS stream to be verified every 0.2 s was verified every third frame (0.3 s) when
# its second frame came after 199 ms. Replayed offline on the demo's walk, every second frame
# instead of every third took the shown answer from 82 to 87 % of frames.
INTERVAL_SLACK = 0.1
IDLE_BUSY_SHARE = 0.5  # "idle most of the time": frames take less than this share of their period
DEFAULT_WORKERS = 1
# The share of its threads' time the pool may spend verifying; after a verification it rests for
# the rest. Without it, four busy streams (each asking every 0.5 s) kept the one worker verifying
# back to back, a whole core of a 2-core box: 4 cameras were answered 15.4 frames a second in
# total against 27.2 for one (bench streams, the demo bundle at 320).
DEFAULT_BUSY_SHARE = 0.5
# The vote search and the matching of a background verification run on one OpenMP thread, as the
# verification holds one core of the inference gate: on two they also took the core left to the
# stream's runs.
BACKGROUND_SEARCH_THREADS = 1
BUSY_ALPHA = 0.2  # EMA weight of a frame in the stream's busy share


class VerificationPool:
    """Threads shared by every stream of a server; refuses work beyond ``workers + 1`` jobs in flight
    (a stream retries with a newer frame), so no queue of stale frames builds up, and refuses it
    while resting: after a job of ``t`` seconds the pool takes no new one for ``t * (1 / busy_share
    - 1)`` seconds, so verification never takes more than ``busy_share`` of its threads' time,
    however many streams ask (1.0: no rest)."""

    def __init__(self, workers: int = DEFAULT_WORKERS, busy_share: float = DEFAULT_BUSY_SHARE):
        self.workers = checks.positive_int(workers, "verification workers")
        self.busy_share = checks.number(busy_share, "verification busy share", low=0.01, high=1.0)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="muselens-verify")
        self._room = threading.BoundedSemaphore(self.workers + 1)
        self._lock = threading.Lock()
        self._rest_until = 0.0  # perf_counter() before which no job is taken

    def try_submit(self, job, *, rest: bool = True) -> bool:
        """Run ``job()`` in the background if there is room and the pool is not resting; False
        (nothing done) if not. ``rest=False``: a job of a stream that leaves the box idle, which
        neither waits for the rest nor adds to it."""
        with self._lock:
            if rest and time.perf_counter() < self._rest_until:
                return False
        if not self._room.acquire(blocking=False):
            return False

        def run() -> None:
            started = time.perf_counter()
            try:
                job()
            finally:
                took = time.perf_counter() - started
                if rest:
                    with self._lock:
                        self._rest_until = max(self._rest_until,
                                               time.perf_counter() + took * (1 / self.busy_share - 1) / self.workers)
                self._room.release()

        try:
            self._executor.submit(run)
        except RuntimeError:  # shut down
            self._room.release()
            return False
        return True

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class VerifiedFrame:
    """A stream frame's verification: which frame, and when it was received and finished."""

    frame_id: str
    report: VerificationReport
    received: float  # time.perf_counter() of the frame's arrival
    finished: float

    def age_ms(self, now: float | None = None) -> float:
        """How old the verified frame is now (what a client sees as the answer's lag)."""
        return ((time.perf_counter() if now is None else now) - self.received) * 1e3


class StreamVerification:
    """One stream's background verification: at most one frame in flight, at most every ``interval_s``."""

    def __init__(self, pool: VerificationPool, interval_s: float = DEFAULT_INTERVAL_S,
                 idle_interval_s: float | None = IDLE_INTERVAL_S):
        self.pool = pool
        self.interval_s = checks.number(interval_s, "verification interval", low=0)
        self.idle_interval_s = min(self.interval_s, idle_interval_s if idle_interval_s is not None else interval_s)
        self.busy_share: float | None = None  # EMA of each frame's processing time over its period
        self._last_received: float | None = None
        self._lock = threading.Lock()
        self._busy = False
        self._last_offer = -float("inf")
        self._done: VerifiedFrame | None = None
        self._taken: VerifiedFrame | None = None
        self.errors = 0

    def record(self, received: float, processing_ms: float) -> None:
        """A frame of the stream arrived at ``received`` (perf_counter) and took ``processing_ms``."""
        if self._last_received is not None and received > self._last_received:
            share = min(1.0, processing_ms / 1e3 / (received - self._last_received))
            self.busy_share = share if self.busy_share is None else \
                self.busy_share + BUSY_ALPHA * (share - self.busy_share)
        self._last_received = received

    @property
    def idle(self) -> bool:
        """Whether the stream's frames take less than half their period (the box is idle most of the time)."""
        return self.busy_share is not None and self.busy_share < IDLE_BUSY_SHARE

    @property
    def current_interval_s(self) -> float:
        """The interval now: the short one while the stream leaves the box idle most of the time."""
        return self.idle_interval_s if self.idle else self.interval_s

    def due(self, client: Hashable | None = None) -> bool:
        """Whether a frame offered now would be taken (none in flight, the interval over, and the
        stream's ``client`` token within its share of a busy server, see
        :meth:`~muselens.runtime.engine.gate.UseMeter.over_share`): only such a frame needs what
        verification uses beyond the answer (its regional candidates)."""
        if CLIENT_USE.over_share(client):
            return False
        now = time.perf_counter()
        with self._lock:
            return not self._busy and now - self._last_offer >= self.current_interval_s * (1.0 - INTERVAL_SLACK)

    def offer(self, model: ServedModel, frame_id: str, image: np.ndarray | Callable[[], np.ndarray],
              instance_ids: Sequence[str], descriptor: np.ndarray, received: float, keep_pairs: bool = False,
              regional_scores: Mapping[str, float] | None = None, client: Hashable | None = None) -> bool:
        """Verify this frame in the background if the budget allows; True if it was taken.

        ``image`` is the RGB frame, or a function that decodes it (called in the background,
        only for a frame that is verified). ``instance_ids`` and ``regional_scores``: the
        candidates and part scores its recognition found, as a verifying call would use them.
        ``client``: the stream's token, whose share of the server the verification is counted in."""
        now = time.perf_counter()
        with self._lock:
            early = now - self._last_offer < self.current_interval_s * (1.0 - INTERVAL_SLACK)
            if self._busy or early or model.verifier is None:
                return False
            self._busy = True

        def job() -> None:
            try:
                with fair_share(client), ACTIVITY.busy():  # the streams' inferences take one core meanwhile
                    pixels = image() if callable(image) else image
                    # one core's search, as one core's inference: the stream's runs keep the other
                    report = model.verify(pixels, instance_ids, descriptor, keep_pairs=keep_pairs,
                                          regional_scores=regional_scores, search_threads=BACKGROUND_SEARCH_THREADS)
                done = VerifiedFrame(frame_id, report, received, time.perf_counter())
            except Exception as exc:  # noqa: BLE001 -- one frame's failure must not end verification
                log.error("background verification of a frame failed: %s: %s", type(exc).__name__, exc)
                done = None
            with self._lock:
                self._busy = False
                if done is not None:
                    self._done = done
                else:
                    self.errors += 1

        if not self.pool.try_submit(job, rest=not self.idle):
            with self._lock:
                self._busy = False
            return False
        with self._lock:
            self._last_offer = now
        return True

    def take_new(self) -> VerifiedFrame | None:
        """The newest finished verification not taken before (None if nothing new)."""
        with self._lock:
            done = self._done
            if done is None or done is self._taken:
                return None
            self._taken = done
            return done

    @property
    def latest(self) -> VerifiedFrame | None:
        """The newest finished verification, taken or not."""
        with self._lock:
            return self._done

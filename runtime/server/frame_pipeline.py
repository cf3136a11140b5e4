"""A stream's frames decoded and resized one ahead of its inference, on their own thread.

Without it a stream's worker decodes frame n+1 only after frame n's answer left, so decode and
resize (a quarter of the frame's time at 448 on 2 cores) sit on the critical path between two
inferences. Here a preparer thread takes the newest frame from the stream's
:class:`~muselens.runtime.server.latest.LatestSlot`, decodes it at the size the model needs and
resizes it while the worker is still inferring the frame before, and hands it over. It prepares
exactly one frame ahead and waits until the worker takes it: a frame that would be replaced
before inference is never decoded, so a camera sending faster than the box answers costs no
wasted decodes.

It starts *just in time*: not as soon as the worker took the frame before, but a learnt lead
before the worker is expected back (its running time per frame). A camera faster than the box
then has its newest frame prepared, not the one that was newest when the worker's inference
began, a whole inference older. Measured with one 30 FPS camera at 448 on 2 cores (the worker's
cycle ~55 ms), preparing at once made frames wait 69 ms at p50 for inference, more than the
15 ms of no pipeline at all. A worker that comes back early wakes the preparer at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from muselens.runtime.engine import Cancellation
from muselens.runtime.frames import FrameError
from muselens.runtime.recognition.served_model import ServedModel
from muselens.runtime.server.handlers import MalformedMessage
from muselens.runtime.server.latest import Arrival, LatestSlot
from muselens.v1 import recognition_pb2 as pb


@dataclass
class PreparedFrame:
    """One frame ready for inference on ``model``, or the reason it cannot be."""

    arrival: Arrival
    model: ServedModel
    pixels: np.ndarray | None = None  # as decoded (at least the model's size)
    resized: np.ndarray | None = None  # at the recognition size
    error: FrameError | None = None  # this frame's own fault: answered, the stream goes on
    failure: BaseException | None = None  # anything else (Cancelled: the call ended): the worker re-raises it
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def frame(self) -> pb.Frame | MalformedMessage:
        return self.arrival.item


EMA_ALPHA = 0.2  # weight of the newest cycle in the worker's running time per frame
# How long before the worker is expected back a preparation starts (the lead) is learnt per stream:
# each frame the worker did not wait for shortens it by this factor, down to one preparation's
# time; a wait lengthens it by twice the wait. Preparation times vary with what shares the cores
# (the tail of an inference, another stream's decode, a verification), so no fixed lead is both
# fresh and on time. A stream that leaves the worker waiting for frames ends up preparing each as
# it arrives, as a pipeline without the just-in-time start would.
LEAD_SHRINK = 0.8
LEAD_GROWTH = 2.0
WAITED_S = 0.001  # a take that waited longer than this for its frame was late


def _ema(previous: float | None, value: float) -> float:
    return value if previous is None else previous + EMA_ALPHA * (value - previous)


# (frame, model, timings) -> pixels; it records its own "decode" ms, and any wait for a turn as "queue"
Decode = Callable[[pb.Frame, ServedModel, dict], np.ndarray]


def prepare(arrival: Arrival, model: ServedModel, decode: Decode) -> PreparedFrame:
    """Decode and resize one arrival for ``model`` (a malformed message passes as it is)."""
    prepared = PreparedFrame(arrival, model)
    if isinstance(arrival.item, MalformedMessage):
        return prepared
    try:
        prepared.pixels = decode(arrival.item, model, prepared.timings_ms)
        t1 = time.perf_counter()
        prepared.resized = model.describer.resize(prepared.pixels)
        prepared.timings_ms["preprocess"] = (time.perf_counter() - t1) * 1e3
    except FrameError as exc:
        prepared.error = exc
    except Exception as exc:  # noqa: BLE001 -- handed to the worker, which answers it as the service does
        prepared.failure = exc
    return prepared


class FramePreparer:
    """The preparer thread of one stream; :meth:`take` is the worker's side."""

    def __init__(self, slot: LatestSlot, current_model: Callable[[], ServedModel], decode: Decode,
                 cancel: Cancellation):
        self.slot = slot
        self.current_model = current_model
        self.decode = decode
        self.cancel = cancel
        self._cond = threading.Condition()
        self._ready: PreparedFrame | None = None
        self._done = False  # the slot closed and nothing more will be prepared
        self._busy = False  # a frame is being prepared now
        self._worker_waiting = False  # the worker is in take(): prepare whatever comes, at once
        self._taken_at: float | None = None  # perf_counter() when the worker last took a frame
        self._cycle_s: float | None = None  # running time from the worker's take to its next take
        self._prepare_s = 0.0  # the last preparation's time (a decode turn's wait included)
        self._lead_s: float | None = None  # how long before the worker is expected back to start
        self._thread = threading.Thread(target=self._run, name="muselens-stream-prepare", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self.cancel.cancelled:
                with self._cond:  # one ahead: wait until the worker took the frame prepared before
                    self._cond.wait_for(lambda: self._ready is None or self.cancel.cancelled)
                    self._wait_for_start()
                if self.cancel.cancelled:
                    break
                arrival = self.slot.take()
                if arrival is None:  # closed and empty
                    break
                with self._cond:
                    self._busy = True
                started = time.perf_counter()
                prepared = prepare(arrival, self.current_model(), self.decode)
                with self._cond:
                    self._prepare_s = time.perf_counter() - started
                    self._ready, self._busy = prepared, False
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def start_at(self) -> float | None:
        """perf_counter() at which the next preparation should start (None: at once, nothing is
        known yet): when the worker is expected back, less the learnt lead."""
        if self._taken_at is None or self._cycle_s is None or self._lead_s is None:
            return None
        return self._taken_at + self._cycle_s - self._lead_s

    def _learn_lead(self, waited: float) -> None:
        """Shorten the lead after a take that found its frame ready, lengthen it after a late one
        (called with ``_cond`` held). It starts as the whole cycle: a preparation at once."""
        if self._cycle_s is None:
            return
        if self._lead_s is None:
            self._lead_s = self._cycle_s
        elif waited > WAITED_S:
            self._lead_s = min(self._cycle_s, self._lead_s + LEAD_GROWTH * waited)
        else:
            self._lead_s = max(self._prepare_s, self._lead_s * LEAD_SHRINK)

    def _wait_for_start(self) -> None:
        """Hold the next preparation until :meth:`start_at`, or until the worker asks, or a cancel
        (called with ``_cond`` held)."""
        start = self.start_at()
        if start is None:
            return
        delay = start - time.perf_counter()
        if delay > 0:
            self._cond.wait_for(lambda: self._worker_waiting or self.cancel.cancelled, delay)

    def wake(self) -> None:
        """Let a waiting :meth:`take` or the preparer see a cancellation."""
        with self._cond:
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> PreparedFrame | None:
        """The next prepared frame; None once the stream ended, or after ``timeout`` seconds in which
        no frame arrived (a frame that arrived in time and is still being prepared is waited for)."""
        def ready() -> bool:
            return self._ready is not None or self._done or self.cancel.cancelled

        entered = time.perf_counter()
        with self._cond:
            if self._taken_at is not None:  # the worker's own time since its last take
                self._cycle_s = _ema(self._cycle_s, entered - self._taken_at)
            self._worker_waiting = True
            self._cond.notify_all()
            try:
                if not self._cond.wait_for(ready, timeout) and not (self._busy and self._cond.wait_for(ready)):
                    self._taken_at = None  # an idle stream: its next frame starts a new cycle
                    return None
            finally:
                self._worker_waiting = False
            prepared, self._ready = self._ready, None
            self._taken_at = time.perf_counter()
            self._learn_lead(self._taken_at - entered)
            self._cond.notify_all()
            return prepared

    @property
    def finished(self) -> bool:
        """The stream's frames ended (half-close, cancel) and every prepared frame was taken."""
        with self._cond:
            return self._ready is None and (self._done or self.cancel.cancelled)

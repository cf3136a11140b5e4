"""A stream's frames decoded and resized one ahead of its inference, on their own thread.

Without it a stream's worker decodes frame n+1 only after frame n's answer left, so decode and
resize (a quarter of the frame's time at 448 on 2 cores) sit on the critical path between two
inferences. Here a preparer thread takes the newest frame from the stream's
:class:`~muselens.runtime.server.latest.LatestSlot`, decodes it at the size the model needs,
resizes it, and hands it over. It prepares exactly one frame ahead and waits until the worker
takes it: a frame that would be replaced before inference is never decoded, so a camera sending
faster than the box answers costs no wasted decodes.

It starts when the worker's inference of the frame before returns (:meth:`FramePreparer.inferred`),
or at once when the worker asks for a frame without one. The decode then runs while the worker
matches, tracks and answers, on a core that inference is not using; a decode during the
inference, on a box whose every core the inference spreads over, stalls each of its operators
(issue 22's earlier design started a learnt lead before the worker was expected back, so that
the decode ended as the inference did). Alternated against that design on 2 cores, in four pairs
of runs with one 30 FPS camera at 448: the stream's inference took 37-40 ms at p50 instead of
42-56, its decode 4.4-4.5 instead of 7.2-8.1, and its answers came 67-74 ms after their frames
instead of 77-90; as many frames were answered (18.8-20.7 a second against 17.3-21.3), the
decode now being on the worker's path as its answer leaves. At 320, four pairs each: two cameras
answered 41-46 FPS at p50 63-67 ms against 36-45 at 71-86, four cameras 37-43 FPS at p50 112-129
ms (p99 156-176) against 36-42 at 132-148 (p99 194-230). The frame handed over is also the
camera's newest as the inference ends, not one a whole inference older.
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
    """The preparer thread of one stream; :meth:`take` and :meth:`inferred` are the worker's side."""

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
        self._inferring = False  # the worker took a frame and its inference has not returned yet
        self._thread = threading.Thread(target=self._run, name="muselens-stream-prepare", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self.cancel.cancelled:
                with self._cond:  # one ahead: wait until the worker took the frame prepared before
                    self._cond.wait_for(lambda: self._ready is None or self.cancel.cancelled)
                    # and until its inference returned (or it asks for the next frame)
                    self._cond.wait_for(lambda: not self._inferring or self._worker_waiting or self.cancel.cancelled)
                if self.cancel.cancelled:
                    break
                arrival = self.slot.take()
                if arrival is None:  # closed and empty
                    break
                with self._cond:
                    self._busy = True
                prepared = prepare(arrival, self.current_model(), self.decode)
                with self._cond:
                    self._ready, self._busy = prepared, False
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def inferred(self) -> None:
        """The worker's inference of the frame it took returned: prepare the next one now."""
        with self._cond:
            self._inferring = False
            self._cond.notify_all()

    def wake(self) -> None:
        """Let a waiting :meth:`take` or the preparer see a cancellation."""
        with self._cond:
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> PreparedFrame | None:
        """The next prepared frame; None once the stream ended, or after ``timeout`` seconds in which
        no frame arrived (a frame that arrived in time and is still being prepared is waited for).
        The next preparation waits for :meth:`inferred`, or for the next take."""
        def ready() -> bool:
            return self._ready is not None or self._done or self.cancel.cancelled

        with self._cond:
            self._worker_waiting = True
            self._cond.notify_all()
            try:
                if not self._cond.wait_for(ready, timeout) and not (self._busy and self._cond.wait_for(ready)):
                    return None
            finally:
                self._worker_waiting = False
            prepared, self._ready = self._ready, None
            self._inferring = prepared is not None
            self._cond.notify_all()
            return prepared

    @property
    def finished(self) -> bool:
        """The stream's frames ended (half-close, cancel) and every prepared frame was taken."""
        with self._cond:
            return self._ready is None and (self._done or self.cancel.cancelled)

"""A stream's frames decoded and resized one ahead of its inference, on their own thread.

Without it a stream's worker decodes frame n+1 only after frame n's answer left, so decode and
resize (a quarter of the frame's time at 448 on 2 cores) sit on the critical path between two
inferences. Here a preparer thread takes the newest frame from the stream's
:class:`~muselens.runtime.server.latest.LatestSlot`, decodes it at the size the model needs and
resizes it while the worker is still inferring the frame before, and hands it over. It prepares
exactly one frame ahead and waits until the worker takes it: a frame that would be replaced
before inference is never decoded, so a camera sending faster than the box answers costs no
wasted decodes. The price is freshness: the frame the worker takes may be up to one inference
older than the newest received (its ``queue`` time says by how much).
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
        self._thread = threading.Thread(target=self._run, name="muselens-stream-prepare", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self.cancel.cancelled:
                with self._cond:  # one ahead: wait until the worker took the frame prepared before
                    self._cond.wait_for(lambda: self._ready is None or self.cancel.cancelled)
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

    def wake(self) -> None:
        """Let a waiting :meth:`take` or the preparer see a cancellation."""
        with self._cond:
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> PreparedFrame | None:
        """The next prepared frame; None once the stream ended, or after ``timeout`` seconds in which
        no frame arrived (a frame that arrived in time and is still being prepared is waited for)."""
        def ready() -> bool:
            return self._ready is not None or self._done or self.cancel.cancelled

        with self._cond:
            if not self._cond.wait_for(ready, timeout) and not (self._busy and self._cond.wait_for(ready)):
                return None
            prepared, self._ready = self._ready, None
            self._cond.notify_all()
            return prepared

    @property
    def finished(self) -> bool:
        """The stream's frames ended (half-close, cancel) and every prepared frame was taken."""
        with self._cond:
            return self._ready is None and (self._done or self.cancel.cancelled)

"""A stream's preparer: one frame ahead of inference, never a wasted decode, errors handed over."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np

from muselens.runtime.engine import Cancellation
from muselens.runtime.frames import FrameError
from muselens.runtime.server.frame_pipeline import FramePreparer, prepare
from muselens.runtime.server.handlers import MalformedMessage
from muselens.runtime.server.latest import Arrival, LatestSlot
from muselens.v1 import recognition_pb2 as pb

MODEL = SimpleNamespace(describer=SimpleNamespace(resize=lambda pixels: pixels[::2, ::2]))


class Decoder:
    """Records which frames it decoded; optionally blocks until released."""

    def __init__(self, block: bool = False):
        self.decoded: list[str] = []
        self.release = threading.Event()
        if not block:
            self.release.set()

    def __call__(self, frame, model, timings):
        self.release.wait(5)
        timings["decode"] = 0.1
        if frame.frame_id == "bad":
            raise FrameError("corrupt", "cannot be decoded")
        if frame.frame_id == "bug":
            raise RuntimeError("a bug")
        self.decoded.append(frame.frame_id)
        return np.zeros((8, 8, 3), np.uint8)


def _preparer(decoder, slot=None):
    slot = slot or LatestSlot()
    cancel = Cancellation()
    return FramePreparer(slot, lambda: MODEL, decoder, cancel), slot, cancel


def test_prepare_times_decode_and_resize_and_passes_malformed_messages():
    done = prepare(Arrival(pb.Frame(frame_id="a"), time.perf_counter()), MODEL, Decoder())
    assert done.resized.shape == (4, 4, 3) and done.pixels.shape == (8, 8, 3)
    assert set(done.timings_ms) == {"decode", "preprocess"} and done.error is None
    bad = MalformedMessage("muselens.v1.Frame", 3, "truncated")
    passed = prepare(Arrival(bad, time.perf_counter()), MODEL, Decoder())
    assert passed.frame is bad and passed.resized is None


def test_a_frame_error_and_a_failure_are_handed_to_the_worker():
    error = prepare(Arrival(pb.Frame(frame_id="bad"), 0.0), MODEL, Decoder())
    assert error.error is not None and error.error.reason == "corrupt" and error.failure is None
    failure = prepare(Arrival(pb.Frame(frame_id="bug"), 0.0), MODEL, Decoder())
    assert isinstance(failure.failure, RuntimeError)


def test_one_frame_ahead_and_no_decode_of_a_frame_replaced_before_its_turn():
    decoder = Decoder()
    preparer, slot, cancel = _preparer(decoder)
    slot.put(pb.Frame(frame_id="1"))
    deadline = time.monotonic() + 5
    while decoder.decoded != ["1"] and time.monotonic() < deadline:
        time.sleep(0.005)
    # frame 1 is prepared and waits for the worker: 2 and 3 arrive meanwhile, 2 is replaced unseen
    slot.put(pb.Frame(frame_id="2"))
    slot.put(pb.Frame(frame_id="3"))
    time.sleep(0.05)
    assert decoder.decoded == ["1"]  # nothing prepared beyond the one ahead
    assert preparer.take(5).frame.frame_id == "1"
    assert preparer.take(5).frame.frame_id == "3"
    assert decoder.decoded == ["1", "3"] and slot.dropped == 1
    slot.close()
    assert preparer.take(5) is None and preparer.finished
    cancel.cancel()


def test_the_next_frame_is_prepared_once_the_inference_returned_before_the_worker_asks():
    decoder = Decoder()
    preparer, slot, cancel = _preparer(decoder)
    slot.put(pb.Frame(frame_id="1"))
    assert preparer.take(5).frame.frame_id == "1"
    slot.put(pb.Frame(frame_id="2"))  # arrives while "1" is being inferred
    time.sleep(0.05)
    assert decoder.decoded == ["1"]  # not decoded beside the inference
    preparer.inferred()
    deadline = time.monotonic() + 5
    while decoder.decoded != ["1", "2"] and time.monotonic() < deadline:
        time.sleep(0.005)
    assert decoder.decoded == ["1", "2"]  # prepared while the worker answers "1", before it asks
    assert preparer.take(5).frame.frame_id == "2"
    cancel.cancel()


def test_idle_timeout_and_a_frame_still_being_prepared():
    decoder = Decoder(block=True)
    preparer, slot, cancel = _preparer(decoder)
    assert preparer.take(0.05) is None and not preparer.finished  # idle: nothing arrived
    slot.put(pb.Frame(frame_id="1"))
    time.sleep(0.05)  # taken by the preparer, whose decode is blocked
    threading.Timer(0.2, decoder.release.set).start()
    prepared = preparer.take(0.05)  # the timeout passes mid-preparation: waited for, not "idle"
    assert prepared is not None and prepared.frame.frame_id == "1"
    cancel.cancel()


def test_cancel_ends_a_waiting_take():
    preparer, slot, cancel = _preparer(Decoder())
    threading.Timer(0.1, lambda: (cancel.cancel(), preparer.wake())).start()
    start = time.monotonic()
    assert preparer.take(None) is None
    assert time.monotonic() - start < 2 and preparer.finished


class Camera:
    """Puts a numbered frame in the slot every ``period`` seconds, as a camera faster than the box."""

    def __init__(self, slot: LatestSlot, period: float = 0.01):
        self.slot, self.period, self.stop = slot, period, threading.Event()
        self.sent_at: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.wait(self.period):
            self.sent_at[str(n)] = time.perf_counter()
            self.slot.put(pb.Frame(frame_id=str(n)))
            n += 1


def _slow_decoder(seconds: float = 0.02):
    def decode(frame, model, timings):
        time.sleep(seconds)
        return np.zeros((8, 8, 3), np.uint8)
    return decode


def test_a_worker_slower_than_the_camera_gets_the_newest_frame_not_one_a_cycle_old():
    """Prepared at once after each take, the frame handed over would be a whole inference old
    (0.2 s here); prepared as the inference returns, it is the camera's newest less a preparation."""
    preparer, slot, cancel = _preparer(_slow_decoder(0.02))
    camera = Camera(slot)
    ages = []
    try:
        for _ in range(6):
            prepared = preparer.take(5)
            ages.append(time.perf_counter() - camera.sent_at[prepared.frame.frame_id])
            time.sleep(0.2)  # the worker's inference
            preparer.inferred()
            time.sleep(0.005)  # its answer
    finally:
        camera.stop.set()
        cancel.cancel()
    assert max(ages[1:]) < 0.1, ages


def test_a_worker_asking_without_an_inference_gets_a_frame_after_one_preparation():
    """A frame answered without inference (malformed, a bad timestamp) never calls inferred()."""
    preparer, slot, cancel = _preparer(_slow_decoder(0.01))
    camera = Camera(slot)
    try:
        preparer.take(5)
        time.sleep(0.3)
        start = time.perf_counter()
        assert preparer.take(5) is not None
        assert time.perf_counter() - start < 0.15
    finally:
        camera.stop.set()
        cancel.cancel()

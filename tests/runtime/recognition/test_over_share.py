"""A client over its share of a busy server has its verification deferred, never its answer."""

from __future__ import annotations

import time

import numpy as np

from muselens.runtime.engine.gate import CLIENT_USE, InferenceGate, fair_share
from muselens.runtime.recognition.background_verification import StreamVerification, VerificationPool
from muselens.runtime.recognition.options import RecognizeOptions
from muselens.runtime.server import convert
from muselens.runtime.verification import DEFERRED, NOT_REQUESTED, NOT_VERIFIED, VerificationReport
from muselens.v1 import recognition_pb2 as pb
from tests.paintings import painting, photographed


def _busy(flood: str = "flood", good: str = "good") -> None:
    """The flood held slots all of the last few seconds, the good client a fifth of them."""
    for _ in range(40):
        CLIENT_USE.charge(flood, 0.1)
        CLIENT_USE.charge(good, 0.02)
    assert CLIENT_USE.over_share(flood) and not CLIENT_USE.over_share(good)


def test_the_flood_is_answered_from_the_descriptor_and_the_good_client_verified(painted):
    photo = photographed(painting(2), seed=5, frame=(720, 960))[0]
    _busy()
    with fair_share("flood"):
        deferred = painted.recognize(photo, RecognizeOptions(top_k=3, verify=True))
    with fair_share("good"):
        verified = painted.recognize(photo, RecognizeOptions(top_k=3, verify=True))
    assert deferred.verification.state == DEFERRED and deferred.matches  # still answered
    assert verified.verification.state not in (DEFERRED, NOT_REQUESTED)
    message = convert.recognition_message("f1", deferred)
    assert message.verification.state == pb.VERIFICATION_STATE_DEFERRED and message.matches


def test_a_stream_over_its_share_offers_no_frame_for_verification():
    pool = VerificationPool(1, busy_share=1.0)
    stream = StreamVerification(pool, interval_s=0.0)
    assert stream.due("flood") and stream.due(None)
    _busy()
    assert not stream.due("flood") and stream.due("good") and stream.due(None)
    pool.shutdown()


def test_a_background_verification_counts_as_its_streams_client():
    class Model:
        verifier = object()

        def verify(self, image, ids, descriptor, *, keep_pairs=False, regional_scores=None, search_threads=None):
            with InferenceGate(1).slot():  # what the served model's verification gate does
                time.sleep(0.15)
            return VerificationReport(NOT_VERIFIED)

    pool = VerificationPool(1, busy_share=1.0)
    stream = StreamVerification(pool, interval_s=0.0)
    assert stream.offer(Model(), "1", np.zeros((4, 4, 3), np.uint8), ["a"], np.zeros(4, np.float32),
                        time.perf_counter(), client="cam-3")
    deadline = time.monotonic() + 5
    while stream.latest is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "cam-3" in CLIENT_USE.rates()
    pool.shutdown()

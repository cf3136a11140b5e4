"""What the recognize and stream commands show of a verified answer."""

from __future__ import annotations

import numpy as np

from muselens.runtime.client.recognize_command import describe
from muselens.runtime.client.stream_command import annotate, line
from muselens.runtime.explain.overlay import OUTLINE_RGB
from muselens.v1 import recognition_pb2 as pb

OUTLINE = [pb.Point(x=0.2, y=0.2), pb.Point(x=0.8, y=0.2), pb.Point(x=0.8, y=0.8), pb.Point(x=0.2, y=0.8)]


def verified(frame_id: str, verified_frame: str) -> pb.Recognition:
    return pb.Recognition(frame_id=frame_id, decision=pb.DECISION_ARTWORK,
                          matches=[pb.Match(instance_id="a1", title="Nighthawks", score=0.7, inliers=48)],
                          verification=pb.Verification(state=pb.VERIFICATION_STATE_VERIFIED, instance_id="a1",
                                                       inliers=48, matches=60, outline=OUTLINE,
                                                       frame_id=verified_frame, age_ms=120))


def test_recognize_prints_the_verification_and_each_matchs_inliers():
    text = describe("photo.jpg", verified("1", "1"))
    assert "verified: a1, 48 inliers of 60 matches, outline (0.20,0.20) (0.80,0.20)" in text
    assert "a1  Nighthawks  (48 inliers)" in text
    bare = describe("photo.jpg", pb.Recognition(verification=pb.Verification(
        state=pb.VERIFICATION_STATE_UNAVAILABLE)))
    assert "verification: unavailable" in bare


def test_a_stream_frame_draws_the_outline_only_when_it_was_verified_itself():
    image = np.zeros((100, 100, 3), np.uint8)
    own = annotate(image, verified("5", "5"), 30.0)
    assert (own == np.array(OUTLINE_RGB, np.uint8)).all(axis=2).sum() > 100
    older = annotate(image, verified("6", "5"), 30.0)
    assert (older == np.array(OUTLINE_RGB, np.uint8)).all(axis=2).sum() == 0
    assert "verified a1 (48 inliers, frame 5, 120 ms ago)" in line(verified("6", "5"), 30.0)

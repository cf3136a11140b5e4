"""Verification through the service: unary calls verify on the critical path, streams beside it."""

from __future__ import annotations

import time

import cv2
import grpc
import numpy as np
import pytest

from muselens.v1 import recognition_pb2 as pb
from tests.paintings import painting, photographed
from tests.runtime.server.conftest import frame
from tests.runtime.server.test_stream import Lockstep

FRAME = (720, 960)


@pytest.fixture(scope="module")
def photo_jpeg() -> tuple[bytes, np.ndarray]:
    image, truth = photographed(painting(2), seed=5, frame=FRAME)  # artwork a1 of the painted bundle
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return data.tobytes(), truth / np.array([FRAME[1], FRAME[0]])


def test_a_unary_call_is_verified_and_says_how(painted, start_server, photo_jpeg):
    server = start_server(painted)
    r = server.stub.Recognize(frame(photo_jpeg[0], "p1", verify=pb.VERIFY_MODE_ON), timeout=30)
    v = r.verification
    assert v.state == pb.VERIFICATION_STATE_VERIFIED and v.instance_id == "a1" and v.frame_id == "p1"
    assert r.decision == pb.DECISION_ARTWORK and r.matches[0].instance_id == "a1"
    assert v.inliers >= 30 and v.matches >= v.inliers and v.candidates >= 3 and v.verify_ms > 0
    outline = np.array([[p.x, p.y] for p in v.outline])
    assert outline.shape == (4, 2) and np.abs(outline - photo_jpeg[1]).max() < 0.015
    assert not v.keypoints and r.timings.verify_ms > 0
    assert r.matches[0].inliers == v.inliers and v.evidence > v.runner_up_evidence
    explained = server.stub.Recognize(frame(photo_jpeg[0], "p2", explain=True), timeout=30).verification
    assert len(explained.keypoints) == explained.inliers  # the server's default verifies
    off = server.stub.Recognize(frame(photo_jpeg[0], "p3", verify=pb.VERIFY_MODE_OFF), timeout=30)
    assert off.verification.state == pb.VERIFICATION_STATE_NOT_REQUESTED and not off.verification.outline
    assert server.stub.GetBundleInfo(pb.GetBundleInfoRequest(), timeout=10).verification == "orb"
    counted = server.server.metrics.verifications.labels("Recognize", "verified")._value.get()
    assert counted == 2  # p1 and p2; p3 asked for none


def test_an_unknown_verify_mode_is_refused(painted, start_server, photo_jpeg):
    server = start_server(painted)
    with pytest.raises(grpc.RpcError) as error:
        server.stub.Recognize(frame(photo_jpeg[0], verify=9), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "bad_verify" in error.value.details()


def _stream_until_verified(server, data: bytes, frames: int = 40, **options) -> list[pb.Recognition]:
    stream = Lockstep(server.stub, timeout=60)
    answers = []
    for i in range(frames):
        answers.append(stream.send(pb.Frame(frame_id=str(i), timestamp=1.0 + 0.05 * i, image=pb.Image(encoded=data),
                                            options=pb.RecognizeOptions(**options))))
        if answers[-1].verification.state == pb.VERIFICATION_STATE_VERIFIED:
            break
        time.sleep(0.05)
    stream.close()
    return answers


def test_a_stream_is_verified_in_the_background_and_shows_the_verified_artwork(painted, start_server, photo_jpeg):
    server = start_server(painted, verify_interval_s=0.0)
    answers = _stream_until_verified(server, photo_jpeg[0])
    last = answers[-1]
    assert last.verification.state == pb.VERIFICATION_STATE_VERIFIED and last.verification.instance_id == "a1"
    assert int(last.verification.frame_id) < int(last.frame_id)  # an earlier frame, verified beside the stream
    assert 0 < last.verification.age_ms < 10_000
    assert last.smoothed.decision == pb.DECISION_ARTWORK and last.smoothed.instance_id == "a1"
    assert all(a.timings.verify_ms == 0 for a in answers)  # never on a frame's critical path
    assert len(last.verification.outline) == 4
    # the fitted artwork carried into the frame answered (the same frame again: where it was)
    (carried,) = last.verification.in_view
    assert carried.instance_id == "a1" and carried.at_centre and carried.inliers == last.verification.inliers
    outline = np.array([[p.x, p.y] for p in carried.outline])
    assert np.abs(outline - photo_jpeg[1]).max() < 0.02


def test_a_verified_artwork_the_camera_turns_away_from_is_no_longer_shown(painted, start_server, photo_jpeg):
    """The camera pans right: the artwork slides left out of the centre, its outline carried frame by frame."""
    from muselens.runtime.verification.shortlist import holds_centre

    image = cv2.imdecode(np.frombuffer(photo_jpeg[0], np.uint8), cv2.IMREAD_COLOR)
    wall = np.concatenate([image, cv2.resize(painting(1234, 90, 60), (400, FRAME[0]))[:, :, ::-1]], axis=1)
    server = start_server(painted, verify_interval_s=0.0)
    stream = Lockstep(server.stub, timeout=60)

    def send(i: int, x: int) -> pb.Recognition:
        ok, data = cv2.imencode(".jpg", wall[:, x:x + FRAME[1]], [cv2.IMWRITE_JPEG_QUALITY, 92])
        return stream.send(pb.Frame(frame_id=str(i), timestamp=1.0 + 0.05 * i, image=pb.Image(encoded=data.tobytes())))

    for i in range(40):  # held on the artwork until a frame of it is verified
        if send(i, 0).smoothed.instance_id == "a1":
            break
    else:
        pytest.fail("the artwork was never verified")
    off_centre = []
    for j, x in enumerate(range(40, 400, 40), start=100):
        answer = send(j, x)
        truth = (photo_jpeg[1] * [FRAME[1], FRAME[0]] - [x, 0]) / [FRAME[1], FRAME[0]]
        for carried in answer.verification.in_view:
            assert carried.instance_id == "a1"
            outline = np.array([[p.x, p.y] for p in carried.outline])
            assert np.abs(outline - truth).max() < 0.03
            assert carried.at_centre == holds_centre(truth)
            if not carried.at_centre:
                off_centre.append(answer.smoothed.instance_id)
    stream.close()
    assert off_centre and "a1" not in off_centre  # carried off the centre: no longer the answer


@pytest.mark.parametrize("how", ["frame says off", "server has no verification workers"])
def test_a_stream_without_verification_is_answered_from_descriptors_only(painted, start_server, photo_jpeg, how):
    server = start_server(painted, **({"verify_workers": 0} if how.startswith("server") else {}))
    options = {"verify": pb.VERIFY_MODE_OFF} if how.startswith("frame") else {}
    answers = _stream_until_verified(server, photo_jpeg[0], frames=6, **options)
    assert len(answers) == 6
    assert all(not a.HasField("verification") or a.verification.state in
               (pb.VERIFICATION_STATE_UNSPECIFIED, pb.VERIFICATION_STATE_NOT_REQUESTED) for a in answers)


@pytest.mark.parametrize("field, value", [("verify_workers", -1), ("verify_workers", 1.5), ("verify_interval_s", -0.1)])
def test_verification_settings_are_checked_when_the_server_is_configured(field, value):
    from muselens.runtime.server.app import ServerConfig

    with pytest.raises((ValueError, TypeError), match=field):
        ServerConfig(**{field: value})

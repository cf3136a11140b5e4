"""Streams with the pipelined path and reduced JPEG decoding: same answers, smaller decodes."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from muselens.core.data.images import encode_jpeg
from tests.runtime.server.conftest import frame, rgb
from tests.runtime.server.test_stream import Lockstep


@pytest.fixture
def camera_frames(query_images) -> list[bytes]:
    """The tiny museum's queries as 1280x720 camera JPEGs."""
    return [encode_jpeg(cv2.resize(rgb(data), (1280, 720), interpolation=cv2.INTER_CUBIC), 90)
            for data in query_images]


@pytest.fixture
def seen_sizes(served, monkeypatch) -> list[tuple[int, int]]:
    """The (height, width) of every frame the describer resizes, through any model sharing it."""
    sizes: list[tuple[int, int]] = []
    resize = served.describer.resize

    def spy(image):
        sizes.append(image.shape[:2])
        return resize(image)

    monkeypatch.setattr(served.describer, "resize", spy)
    return sizes


def _answers(server, frames, rounds: int = 3):
    stream = Lockstep(server.stub)
    out = [stream.send(frame(data, f"{r}-{i}")) for r in range(rounds) for i, data in enumerate(frames)]
    stream.close()
    return out


@pytest.mark.parametrize("pipeline", [True, False])
def test_every_frame_answered_with_its_stages(served, start_server, camera_frames, pipeline):
    answers = _answers(start_server(served, pipeline=pipeline, verify_workers=0), camera_frames)
    assert [a.frame_id for a in answers] == [f"{r}-{i}" for r in range(3) for i in range(3)]
    for a in answers:
        assert not a.HasField("error") and a.matches
        t = a.timings
        assert t.decode_ms > 0 and t.preprocess_ms > 0 and t.inference_ms > 0
        assert t.total_ms >= t.decode_ms + t.preprocess_ms + t.inference_ms - 1e-3


def test_pipelined_and_sequential_streams_give_the_same_answers(served, start_server, camera_frames):
    on = _answers(start_server(served, pipeline=True, verify_workers=0), camera_frames)
    off = _answers(start_server(served, pipeline=False, verify_workers=0), camera_frames)
    for a, b in zip(on, off):
        assert [m.instance_id for m in a.matches] == [m.instance_id for m in b.matches]
        assert np.allclose([m.score for m in a.matches], [m.score for m in b.matches], atol=1e-5)


def test_a_large_jpeg_is_decoded_no_larger_than_recognition_needs(served, start_server, camera_frames, seen_sizes):
    short = served.describer.short_side
    _answers(start_server(served, verify_workers=0), camera_frames[:1], rounds=1)
    (h, w), = seen_sizes
    need_h, need_w = served.describer.output_size(720, 1280)
    assert h < 720 and w < 1280 and h >= need_h >= short and w >= need_w
    seen_sizes.clear()
    full = dataclasses.replace(served, config=dataclasses.replace(served.config, reduced_decode=False))
    _answers(start_server(full, verify_workers=0), camera_frames[:1], rounds=1)
    assert seen_sizes == [(720, 1280)]


def test_decode_need_covers_verification_only_when_it_runs(painted):
    model = painted
    describe = model.decode_need()
    both = model.decode_need(verify=True)
    only = model.decode_need(describe=False, verify=True)
    assert describe(720, 1280) == model.describer.output_size(720, 1280)
    side = model.verifier.features.frame_max_side
    assert max(both(720, 1280)) >= min(side, 1280) and both(720, 1280)[0] >= describe(720, 1280)[0]
    assert only(720, 1280) == model.verifier.frame_size(720, 1280)
    assert model.verifier.frame_size(100, 200) == (100, 200)  # a small frame is enlarged: all of it is needed
    off = dataclasses.replace(model, config=dataclasses.replace(model.config, reduced_decode=False))
    assert off.decode_need(verify=True) is None

"""A JPEG decoded no larger than the caller needs (libjpeg-turbo's n/8 scaling), or in full."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import muselens.runtime.frames.encoded as encoded_module
from muselens.core.data.images import encode_jpeg
from muselens.core.preprocess import resize_short_side, short_side_size
from muselens.runtime.frames import FrameError, decode_encoded, decode_jpeg_reduced

from .helpers import encode, smooth_image


def _frame(height: int = 720, width: int = 1280, seed: int = 0) -> np.ndarray:
    """A camera-like frame: smooth colour blocks, blurred, so every scale keeps its content."""
    return cv2.GaussianBlur(smooth_image(seed, height, width), (0, 0), 3)


def _need(short: int):
    return lambda h, w: short_side_size(h, w, short)


@pytest.mark.parametrize("short, expected", [(448, (450, 800)), (320, (360, 640)), (180, (180, 320))])
def test_a_frame_comes_at_the_smallest_eighth_that_holds_the_need(short, expected):
    data = encode_jpeg(_frame(), 90)
    image = decode_encoded(data, at_least=_need(short))
    assert image.shape == (*expected, 3) and image.dtype == np.uint8
    need = short_side_size(720, 1280, short)
    assert image.shape[0] >= need[0] and image.shape[1] >= need[1]


def test_reduced_pixels_after_the_resize_match_the_full_path():
    frame = _frame()
    data = encode_jpeg(frame, 95)
    full = resize_short_side(decode_encoded(data), 448, interpolation="bicubic")
    reduced = resize_short_side(decode_encoded(data, at_least=_need(448)), 448, interpolation="bicubic")
    assert full.shape == reduced.shape
    # of 255; bicubic's slight sharpening of the decoder's DCT-smoothed pixels is most of it on this
    # blurred frame (1.9; bilinear 1.2). On real grocery photos as 1280x720 JPEGs: 0.5-0.6.
    assert np.abs(full.astype(int) - reduced.astype(int)).mean() < 2.0


def test_no_reduction_where_the_need_is_the_frame_or_more():
    data = encode_jpeg(_frame(400, 600), 90)
    for need in (lambda h, w: (h, w), lambda h, w: (2 * h, 2 * w), lambda h, w: (h - 10, w)):  # 7/8 of 400 < 390
        assert decode_encoded(data, at_least=need).shape == (400, 600, 3)
        assert decode_jpeg_reduced(data, 400, 600, need) is None


def test_grey_jpeg_comes_as_rgb():
    grey = cv2.cvtColor(_frame(), cv2.COLOR_RGB2GRAY)
    data = encode(grey, ".jpg")
    image = decode_encoded(data, at_least=_need(320))
    assert image.shape == (360, 640, 3)
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])


def test_png_is_never_reduced():
    data = encode(_frame(), ".png")
    assert decode_encoded(data, at_least=_need(320)).shape == (720, 1280, 3)


def test_a_corrupt_jpeg_gets_the_same_error_with_or_without_a_need():
    data = bytearray(encode_jpeg(_frame(), 90))
    cut = bytes(data[: len(data) // 2])  # no end marker
    errors = []
    for need in (None, _need(320)):
        with pytest.raises(FrameError) as info:
            decode_encoded(cut, at_least=need)
        errors.append(info.value.reason)
    assert errors[0] == errors[1] == "truncated"


def test_what_the_fast_path_refuses_is_decoded_in_full(monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("a warning, in strict mode")
    monkeypatch.setattr(encoded_module.simplejpeg, "decode_jpeg", refuse)
    assert decode_encoded(encode_jpeg(_frame(), 90), at_least=_need(320)).shape == (720, 1280, 3)


def test_limits_are_checked_before_the_fast_path(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the decoder was called")
    monkeypatch.setattr(encoded_module.simplejpeg, "decode_jpeg", boom)
    from muselens.runtime.frames import FrameLimits
    with pytest.raises(FrameError) as info:
        decode_encoded(encode_jpeg(_frame(), 90), FrameLimits(max_pixels=100_000), at_least=_need(320))
    assert info.value.status == "RESOURCE_EXHAUSTED"

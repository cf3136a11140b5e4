from __future__ import annotations

import pytest

from muselens.core.data.images import MAX_PIXELS
from muselens.runtime.frames.frame_error import FrameError
from muselens.runtime.frames.limits import FrameLimits


def test_defaults():
    limits = FrameLimits()
    assert limits.max_encoded_bytes == 8 * 1024 * 1024
    assert limits.max_pixels == 24_000_000
    assert limits.max_side == 8192
    assert limits.min_side == 32
    assert limits.max_raw_bytes is None  # raw frames: the pixel limits alone, unless a server sets its own


@pytest.mark.parametrize(("width", "height", "reason"), [
    (8193, 100, "side_too_long"),
    (100, 8193, "side_too_long"),
    (6000, 4001, "too_many_pixels"),
    (31, 480, "too_small"),
    (640, 31, "too_small"),
])
def test_check_dimensions_refuses(width, height, reason):
    with pytest.raises(FrameError, match=f"{width}x{height}") as info:
        FrameLimits().check_dimensions(width, height)
    assert info.value.reason == reason


@pytest.mark.parametrize(("width", "height"), [(32, 32), (8192, 2929), (6000, 4000), (160, 120)])
def test_check_dimensions_accepts(width, height):
    FrameLimits().check_dimensions(width, height)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"max_pixels": 0}, ValueError, "max_pixels must be >= 1"),
    ({"max_raw_bytes": 0}, ValueError, "max_raw_bytes must be >= 1"),
    ({"max_raw_bytes": 1.5}, TypeError, "max_raw_bytes must be an int"),
    ({"min_side": 1.5}, TypeError, "min_side must be an int"),
    ({"max_side": True}, TypeError, "max_side must be an int"),
    ({"min_side": 64, "max_side": 32}, ValueError, "min_side .64. exceeds max_side"),
    ({"min_side": 100, "max_pixels": 9999}, ValueError, "no frame could pass"),
    ({"max_pixels": MAX_PIXELS + 1}, ValueError, "image decoder accepts"),
])
def test_invalid_limits(kwargs, error, match):
    with pytest.raises(error, match=match):
        FrameLimits(**kwargs)

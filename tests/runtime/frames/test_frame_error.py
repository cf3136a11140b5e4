from __future__ import annotations

import pytest

from muselens.runtime.frames.frame_error import INVALID_ARGUMENT, REASONS, RESOURCE_EXHAUSTED, FrameError


def test_reason_sets_status_and_message():
    error = FrameError("too_many_pixels", "frame of 30000x30000 is too big")
    assert isinstance(error, ValueError)
    assert error.status == RESOURCE_EXHAUSTED
    assert error.reason == "too_many_pixels"
    assert str(error) == error.message == "frame of 30000x30000 is too big"
    assert FrameError("truncated", "x").status == INVALID_ARGUMENT


def test_every_status_is_a_grpc_code_name():
    assert set(REASONS.values()) == {INVALID_ARGUMENT, RESOURCE_EXHAUSTED}


def test_unknown_reason_is_refused():
    with pytest.raises(ValueError, match="unknown frame error reason 'oops'"):
        FrameError("oops", "message")

"""Property tests of request validation: whatever a client sends, the answer is a valid value or
the one documented error (never another exception, never a frame beyond the limits)."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muselens.runtime.frames import FrameError, FrameLimits
from muselens.runtime.recognition.options import MAX_TOP_K, OptionsError, RecognizeOptions
from muselens.runtime.server import convert
from muselens.v1 import recognition_pb2 as pb
from tests.runtime.server.conftest import frame
from tests.runtime.server.test_stream import Lockstep

UINT32 = st.integers(0, 2**32 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
LIMITS = FrameLimits(max_encoded_bytes=1 << 16, max_pixels=4096, max_side=256, min_side=2)


@st.composite
def options_messages(draw) -> pb.RecognizeOptions:
    message = pb.RecognizeOptions(top_k=draw(UINT32), explain=draw(st.booleans()),
                                  heatmap_kinds=draw(st.lists(st.one_of(st.integers(0, 4), INT32), max_size=5)),
                                  explain_reference=draw(st.booleans()), overlay=draw(st.booleans()))
    if draw(st.booleans()):
        message.region_of_interest.CopyFrom(pb.RegionOfInterest(x0=draw(FLOATS), y0=draw(FLOATS), x1=draw(FLOATS),
                                                                y1=draw(FLOATS)))
    return message


@settings(max_examples=200, deadline=None)
@given(options_messages())
def test_options_are_valid_or_an_options_error(message):
    try:
        options = convert.recognize_options(message)
    except OptionsError as exc:
        assert exc.status == "INVALID_ARGUMENT"
        assert exc.reason in ("bad_top_k", "bad_heatmap_kind", "bad_roi")
        return
    assert isinstance(options, RecognizeOptions)
    assert 1 <= options.top_k <= MAX_TOP_K and options.top_k == (message.top_k or 5)
    assert all(k in (1, 2, 3) for k in message.heatmap_kinds if k != 0)
    if options.roi is not None:
        x0, y0, x1, y1 = options.roi
        assert all(math.isfinite(v) for v in options.roi) and 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    else:
        assert not message.HasField("region_of_interest")


@st.composite
def image_messages(draw) -> pb.Image:
    kind = draw(st.sampled_from(["none", "encoded", "png_header", "jpeg_header", "raw"]))
    if kind == "none":
        return pb.Image()
    if kind == "encoded":
        return pb.Image(encoded=draw(st.binary(max_size=300)))
    if kind == "png_header":  # a signature, then anything: headers, sizes, CRCs at random
        return pb.Image(encoded=b"\x89PNG\r\n\x1a\n" + draw(st.binary(max_size=200)))
    if kind == "jpeg_header":
        return pb.Image(encoded=b"\xff\xd8" + draw(st.binary(max_size=200)))
    width, height = draw(st.one_of(st.integers(0, 80), UINT32)), draw(st.one_of(st.integers(0, 80), UINT32))
    fmt = draw(st.one_of(st.integers(0, 9), INT32))
    if draw(st.booleans()) and width * height <= 80 * 80 and 1 <= fmt <= 8:  # the right size, sometimes
        size = width * height * {1: 3, 2: 3, 3: 4, 4: 4, 5: 1}.get(fmt, 1.5)
        data = bytes(max(0, int(size) + draw(st.integers(-2, 2))))
    else:
        data = draw(st.binary(max_size=300))
    return pb.Image(raw=pb.RawImage(data=data, width=width, height=height, pixel_format=fmt))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_messages())
def test_images_are_rgb_within_limits_or_a_frame_error(image):
    try:
        pixels = convert.image_pixels(image, LIMITS)
    except FrameError as exc:
        assert exc.status in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED") and str(exc)
        return
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 3
    h, w, c = pixels.shape
    assert c == 3 and h * w <= LIMITS.max_pixels and LIMITS.min_side <= min(h, w) and max(h, w) <= LIMITS.max_side


@pytest.mark.parametrize("box", [(0.0, 0.0, 1e-4, 1.0), (0.9999, 0.0, 1.0, 1.0), (0.3, 0.5, 0.7, 0.5001)])
def test_a_valid_roi_without_a_feature_cell_is_invalid_and_the_stream_goes_on(served, start_server, query_images,
                                                                              box):
    """Found by the bad-input corpus: such an ROI passed validation and failed inside the model (UNKNOWN)."""
    server = start_server(served)
    roi = pb.RegionOfInterest(x0=box[0], y0=box[1], x1=box[2], y1=box[3])
    bad = frame(query_images[0], "roi")
    bad.options.region_of_interest.CopyFrom(roi)
    with pytest.raises(grpc.RpcError) as err:
        server.stub.Recognize(bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("bad_roi:")
    stream = Lockstep(server.stub)
    answer = stream.send(bad)
    assert answer.error.code == "INVALID_ARGUMENT" and answer.error.reason == "bad_roi"
    assert stream.send(frame(query_images[1], "next")).matches
    stream.close()

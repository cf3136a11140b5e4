from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from muselens.runtime.frames.frame_error import INVALID_ARGUMENT, RESOURCE_EXHAUSTED, FrameError
from muselens.runtime.frames.limits import FrameLimits
from muselens.runtime.frames.raw import PixelFormat, decode_raw, raw_frame_size

from .helpers import random_image


def _refused(*args, **kwargs) -> FrameError:
    with pytest.raises(FrameError) as info:
        decode_raw(*args, **kwargs)
    return info.value


def _blocky(seed: int, height: int, width: int) -> np.ndarray:
    """RGB constant on 2x2 blocks, so 4:2:0 chroma subsampling loses nothing but rounding."""
    small = random_image(seed, height // 2, width // 2)
    # Mid-range values: video-range YUV clips the extremes.
    small = (32 + small.astype(np.int32) * 192 // 255).astype(np.uint8)
    return np.kron(small, np.ones((2, 2, 1), np.uint8))


def _yuv420(rgb: np.ndarray, fmt: PixelFormat) -> bytes:
    """Build the camera layout of ``fmt`` from OpenCV's I420 planes."""
    height, width = rgb.shape[:2]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
    y, u, v = np.split(i420, [height * width, height * width * 5 // 4])
    if fmt is PixelFormat.I420:
        return i420.tobytes()
    pairs = (u, v) if fmt is PixelFormat.NV12 else (v, u)
    return y.tobytes() + np.stack(pairs, axis=1).reshape(-1).tobytes()


def test_pixel_format_names_are_the_protobuf_names():
    assert [f.name for f in PixelFormat] == ["RGB8", "BGR8", "RGBA8", "BGRA8", "GRAY8", "NV12", "NV21", "I420"]
    assert all(f.value == f"PIXEL_FORMAT_{f.name}" for f in PixelFormat)
    assert PixelFormat.parse("NV21") is PixelFormat.parse("PIXEL_FORMAT_NV21") is PixelFormat.NV21
    assert PixelFormat.parse(PixelFormat.BGR8) is PixelFormat.BGR8


@pytest.mark.parametrize("name", ["PIXEL_FORMAT_UNSPECIFIED", "YUYV", "rgb8", ""])
def test_unknown_pixel_format(name):
    error = _refused(bytes(32 * 32 * 3), 32, 32, name)
    assert (error.reason, error.status) == ("bad_pixel_format", INVALID_ARGUMENT)
    assert "RGB8, BGR8" in str(error)


@pytest.mark.parametrize(("fmt", "size"), [
    ("RGB8", 640 * 480 * 3), ("BGR8", 640 * 480 * 3), ("RGBA8", 640 * 480 * 4), ("BGRA8", 640 * 480 * 4),
    ("GRAY8", 640 * 480), ("NV12", 640 * 480 * 3 // 2), ("NV21", 640 * 480 * 3 // 2), ("I420", 640 * 480 * 3 // 2),
])
def test_raw_frame_size(fmt, size):
    assert raw_frame_size(640, 480, fmt) == size


def test_packed_formats():
    rgb = random_image(0, 40, 50)
    rgba = np.dstack([rgb, random_image(1, 40, 50, channels=1)])
    cases = {
        PixelFormat.RGB8: rgb,
        PixelFormat.BGR8: rgb[..., ::-1],
        PixelFormat.RGBA8: rgba,
        PixelFormat.BGRA8: rgba[..., [2, 1, 0, 3]],
    }
    for fmt, pixels in cases.items():
        out = decode_raw(np.ascontiguousarray(pixels).tobytes(), 50, 40, fmt)
        assert out.dtype == np.uint8 and out.shape == (40, 50, 3) and out.flags.c_contiguous, fmt
        np.testing.assert_array_equal(out, rgb, err_msg=fmt.name)
    grey = random_image(2, 40, 50, channels=1)
    out = decode_raw(grey.tobytes(), 50, 40, PixelFormat.GRAY8)
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


def test_result_owns_its_pixels():
    data = bytearray(random_image(0, 32, 32).tobytes())
    out = decode_raw(data, 32, 32, PixelFormat.RGB8)
    out[0, 0] = 7  # writable
    data[0] ^= 0xFF
    assert out[0, 0, 0] == 7  # not a view of the request buffer


@pytest.mark.parametrize("fmt", [PixelFormat.NV12, PixelFormat.NV21, PixelFormat.I420])
def test_yuv420_formats(fmt):
    rgb = _blocky(3, 48, 64)
    data = _yuv420(rgb, fmt)
    out = decode_raw(data, 64, 48, fmt)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    code = {PixelFormat.NV12: cv2.COLOR_YUV2RGB_NV12, PixelFormat.NV21: cv2.COLOR_YUV2RGB_NV21,
            PixelFormat.I420: cv2.COLOR_YUV2RGB_I420}[fmt]
    np.testing.assert_array_equal(out, cv2.cvtColor(np.frombuffer(data, np.uint8).reshape(72, 64), code))
    # Independent of OpenCV's decoder: the round trip gives back the image (chroma order right).
    assert np.abs(out.astype(int) - rgb).max() <= 4


def test_nv12_and_nv21_differ_by_chroma_order():
    rgb = _blocky(4, 32, 32)
    as_nv21 = decode_raw(_yuv420(rgb, PixelFormat.NV12), 32, 32, PixelFormat.NV21)
    assert np.abs(as_nv21.astype(int) - rgb).max() > 40


def test_size_mismatch_names_both_numbers():
    error = _refused(bytes(100), 640, 480, PixelFormat.NV21)
    assert (error.reason, error.status) == ("size_mismatch", INVALID_ARGUMENT)
    assert "640x480 needs exactly 460800 bytes, got 100" in str(error)
    assert _refused(bytes(32 * 32 * 3 + 1), 32, 32, "RGB8").reason == "size_mismatch"


@pytest.mark.parametrize(("width", "height", "fmt", "reason", "status"), [
    (0, 480, "RGB8", "bad_dimensions", INVALID_ARGUMENT),
    (640, -2, "RGB8", "bad_dimensions", INVALID_ARGUMENT),
    (641, 480, "NV12", "bad_dimensions", INVALID_ARGUMENT),
    (640, 481, "I420", "bad_dimensions", INVALID_ARGUMENT),
    (16, 480, "GRAY8", "too_small", INVALID_ARGUMENT),
    (30000, 30000, "RGB8", "too_many_pixels", RESOURCE_EXHAUSTED),
    (9000, 40, "RGB8", "side_too_long", RESOURCE_EXHAUSTED),
])
def test_dimensions_refused_before_the_data_is_looked_at(width, height, fmt, reason, status):
    error = _refused(b"", width, height, fmt)
    assert (error.reason, error.status) == (reason, status)


def test_odd_sizes_are_fine_for_packed_formats():
    out = decode_raw(bytes(33 * 35 * 3), 33, 35, "BGR8")
    assert out.shape == (35, 33, 3)


def test_custom_limits():
    limits = FrameLimits(max_pixels=64 * 64, min_side=8)
    assert decode_raw(bytes(8 * 8), 8, 8, "GRAY8", limits).shape == (8, 8, 3)
    assert _refused(bytes(65 * 64), 65, 64, "GRAY8", limits).reason == "too_many_pixels"


@pytest.mark.parametrize(("args", "match"), [
    (("x" * 12, 2, 2, "RGB8"), "frame data must be bytes"),
    ((b"", 2.0, 2, "RGB8"), "width must be an int"),
    ((b"", 2, True, "RGB8"), "height must be an int"),
    ((b"", 2, 2, 3), "pixel format must be a PixelFormat"),
    ((b"", 2, 2, "RGB8", {"min_side": 1}), "limits must be FrameLimits"),
])
def test_caller_bugs_are_type_errors(args, match):
    with pytest.raises(TypeError, match=match):
        decode_raw(*args)


SMALL_LIMITS = FrameLimits(max_pixels=96 * 96, max_side=128, min_side=4)
_FORMATS = [*PixelFormat, "PIXEL_FORMAT_UNSPECIFIED", "YUYV"]


@settings(max_examples=400, deadline=None, database=None)
@given(width=st.integers(-3, 140), height=st.integers(-3, 140), fmt=st.sampled_from(_FORMATS),
       delta=st.one_of(st.just(0), st.integers(-3, 3), st.integers(-50_000, 50_000)), seed=st.integers(0, 255))
def test_arbitrary_raw_frames_never_crash(width, height, fmt, delta, seed):
    """Any size, format and byte count: a valid frame within the limits, or FrameError."""
    nominal = raw_frame_size(max(width, 0), max(height, 0), fmt) if isinstance(fmt, PixelFormat) else 0
    data = bytes([seed]) * max(0, nominal + delta)
    try:
        out = decode_raw(data, width, height, fmt, SMALL_LIMITS)
    except FrameError as error:
        assert error.status in (INVALID_ARGUMENT, RESOURCE_EXHAUSTED)
        event(error.reason)
        return
    event("decoded")
    assert out.dtype == np.uint8 and out.shape == (height, width, 3)
    assert SMALL_LIMITS.min_side <= min(width, height) and width * height <= SMALL_LIMITS.max_pixels


def test_raw_bytes_beyond_the_limit_are_refused_before_anything_else():
    limits = FrameLimits(max_raw_bytes=64 * 64, min_side=8)
    assert decode_raw(bytes(64 * 64), 64, 64, "GRAY8", limits).shape == (64, 64, 3)  # exactly the limit
    error = _refused(bytes(64 * 64 + 1), 64, 64, "GRAY8", limits)
    assert (error.reason, error.status) == ("too_large", RESOURCE_EXHAUSTED)
    assert "raw frame of 4097 bytes exceeds the limit of 4096 bytes" in str(error)
    assert _refused(bytes(64 * 64 * 3), 64, 64, "YUYV", limits).reason == "too_large"  # before anything else
    assert decode_raw(bytes(64 * 64 * 3), 64, 64, "RGB8").shape == (64, 64, 3)  # no byte limit by default


# -- converted no larger than the caller needs ---------------------------------------------------


def _need(short: int):
    from muselens.core.preprocess import short_side_size

    return lambda h, w: short_side_size(h, w, short)


def _camera(height: int, width: int, seed: int = 5) -> np.ndarray:
    """A camera-like RGB frame: smooth blocks, blurred, in video range."""
    from .helpers import smooth_image

    image = cv2.GaussianBlur(smooth_image(seed, height, width), (0, 0), 3)
    return (24 + image.astype(np.int32) * 200 // 255).astype(np.uint8)


@pytest.mark.parametrize("fmt", list(PixelFormat))
def test_a_raw_frame_comes_k_times_smaller_and_matches_the_full_path_after_the_resize(fmt):
    from muselens.core.preprocess import resize_short_side

    rgb = _camera(720, 1280)
    if fmt.is_yuv420:
        data = _yuv420(rgb, fmt)
    else:
        packed = {PixelFormat.RGB8: rgb, PixelFormat.BGR8: rgb[..., ::-1], PixelFormat.GRAY8: rgb[..., 1],
                  PixelFormat.RGBA8: np.dstack([rgb, rgb[..., :1]]),
                  PixelFormat.BGRA8: np.dstack([rgb[..., ::-1], rgb[..., :1]])}[fmt]
        data = np.ascontiguousarray(packed).tobytes()
    reduced = decode_raw(data, 1280, 720, fmt, at_least=_need(320))
    assert reduced.shape == (360, 640, 3) and reduced.dtype == np.uint8 and reduced.flags.writeable  # k = 2
    assert decode_raw(data, 1280, 720, fmt, at_least=_need(160)).shape == (180, 320, 3)  # k = 4
    full = resize_short_side(decode_raw(data, 1280, 720, fmt), 320, interpolation="bicubic")
    small = resize_short_side(reduced, 320, interpolation="bicubic")
    assert full.shape == small.shape
    assert np.abs(full.astype(int) - small.astype(int)).mean() < 1.5  # of 255


def test_no_reduction_where_the_need_is_the_frame_or_the_planes_do_not_divide():
    rgb = _camera(480, 640)
    data = _yuv420(rgb, PixelFormat.NV21)
    for need in (lambda h, w: (h, w), lambda h, w: (2 * h, 2 * w), lambda h, w: (h // 2 + 1, w)):
        assert decode_raw(data, 640, 480, PixelFormat.NV21, at_least=need).shape == (480, 640, 3)
    odd = _yuv420(_camera(482, 642), PixelFormat.NV21)  # 4:2:0 planes 241 x 321: no k divides them
    assert decode_raw(odd, 642, 482, PixelFormat.NV21, at_least=_need(100)).shape == (482, 642, 3)
    grey = _camera(482, 642)[..., 0].copy()  # one plane of 482 x 642: halves
    assert decode_raw(grey.tobytes(), 642, 482, PixelFormat.GRAY8, at_least=_need(100)).shape == (241, 321, 3)

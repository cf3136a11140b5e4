from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import muselens.runtime.frames.encoded as encoded_module
from muselens.runtime.frames.encoded import decode_encoded
from muselens.runtime.frames.frame_error import INVALID_ARGUMENT, RESOURCE_EXHAUSTED, FrameError
from muselens.runtime.frames.limits import FrameLimits

from .helpers import PNG_SIGNATURE, encode, ihdr, patch_jpeg_size, png_bomb, random_image, smooth_image, sof_offset


def _refused(data: bytes, limits: FrameLimits = FrameLimits()) -> FrameError:
    with pytest.raises(FrameError) as info:
        decode_encoded(data, limits)
    return info.value


def _pil(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if the decoder is reached: bombs must be refused from the header."""
    def boom(*args, **kwargs):
        raise AssertionError("the decoder was called")
    monkeypatch.setattr(encoded_module, "decode_image", boom)


def _check_frame(image: np.ndarray, height: int, width: int) -> None:
    assert image.dtype == np.uint8
    assert image.shape == (height, width, 3)
    assert image.flags.c_contiguous


# -- what decodes, and how ------------------------------------------------------------------------

def test_png_rgb_is_exact():
    image = random_image(0, 48, 64)
    out = decode_encoded(encode(image, ".png"))
    _check_frame(out, 48, 64)
    np.testing.assert_array_equal(out, image)


def _pil_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_jpeg_rgb_matches_another_decoder_and_is_in_rgb_order():
    image = smooth_image(1, 64, 96)
    data = encode(image, ".jpg", (cv2.IMWRITE_JPEG_QUALITY, 95))
    out = decode_encoded(data)
    _check_frame(out, 64, 96)
    assert np.abs(out.astype(int) - _pil_rgb(data)).max() <= 2
    # Channel order: a pure red image stays red.
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    out = decode_encoded(encode(red, ".jpg"))
    assert out[..., 0].min() > 240 and out[..., 2].max() < 15


def test_progressive_jpeg():
    data = encode(smooth_image(2, 40, 56), ".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1))
    assert b"\xff\xc2" in data
    out = decode_encoded(data)
    _check_frame(out, 40, 56)
    assert np.abs(out.astype(int) - _pil_rgb(data)).max() <= 2


def test_grey_png_and_jpeg_become_three_equal_channels():
    grey = random_image(3, 40, 50, channels=1)
    out = decode_encoded(encode(grey, ".png"))
    _check_frame(out, 40, 50)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)
    out = decode_encoded(encode(np.kron(grey[:5, :7], np.ones((8, 8), np.uint8)), ".jpg"))
    _check_frame(out, 40, 56)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_alpha_is_dropped():
    rgba = random_image(4, 40, 50, channels=4)
    out = decode_encoded(encode(rgba, ".png"))
    np.testing.assert_array_equal(out, rgba[..., :3])
    grey_alpha = _pil(Image.fromarray(rgba[..., :2], "LA"), "PNG")
    out = decode_encoded(grey_alpha)
    _check_frame(out, 40, 50)
    np.testing.assert_array_equal(out[..., 1], rgba[..., 0])


def test_16_bit_png_keeps_the_high_byte():
    image = random_image(5, 40, 50).astype(np.uint16) * 257 + 3
    out = decode_encoded(encode(image, ".png"))
    np.testing.assert_array_equal(out, (image >> 8).astype(np.uint8))


def test_palette_png_with_transparency():
    image = Image.fromarray(smooth_image(6, 40, 48)).convert("P")
    out = decode_encoded(_pil(image, "PNG", transparency=0))
    _check_frame(out, 40, 48)
    np.testing.assert_array_equal(out, np.asarray(image.convert("RGB")))


def test_cmyk_jpeg():
    """OpenCV converts CMYK (Adobe-inverted, as Photoshop and Pillow write it) to BGR itself."""
    rgb = smooth_image(7, 40, 48)
    data = _pil(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    assert encoded_module.sniff(data).channels == 4
    out = decode_encoded(data)
    _check_frame(out, 40, 48)
    assert np.abs(out.astype(int) - _pil_rgb(data)).max() <= 2
    assert np.abs(out.astype(int) - rgb).mean() < 12  # the image survived, colours included


def test_bytearray_and_memoryview():
    data = encode(random_image(0), ".png")
    np.testing.assert_array_equal(decode_encoded(bytearray(data)), decode_encoded(memoryview(data)))


def test_exif_orientation_is_not_applied():
    """Frames are taken as stored, as training reads images (core.data.images)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    out = decode_encoded(_pil(Image.fromarray(smooth_image(8, 40, 64)), "JPEG", exif=exif.tobytes()))
    assert out.shape == (40, 64, 3)


# -- every reason ----------------------------------------------------------------------------------

def test_empty():
    error = _refused(b"")
    assert (error.reason, error.status) == ("empty", INVALID_ARGUMENT)


def test_too_many_encoded_bytes_before_looking_inside():
    error = _refused(b"x" * 1001, FrameLimits(max_encoded_bytes=1000))
    assert (error.reason, error.status) == ("too_large", RESOURCE_EXHAUSTED)
    assert "1001 bytes exceeds the limit of 1000" in str(error)


def test_unknown_format():
    error = _refused(encode(random_image(0), ".bmp"))
    assert (error.reason, error.status) == ("unknown_format", INVALID_ARGUMENT)
    assert "BMP" in str(error)


def test_png_decompression_bomb_is_refused_before_decoding(no_decoding):
    bomb = png_bomb(30000)
    assert len(bomb) < 200_000  # ~110 KB on the wire, 900 MB of pixels once decoded
    error = _refused(bomb)
    assert (error.reason, error.status) == ("too_many_pixels", RESOURCE_EXHAUSTED)
    assert "30000x30000" in str(error)


def test_jpeg_bomb_is_refused_before_decoding(no_decoding):
    jpeg = encode(random_image(0, 64, 64), ".jpg")
    error = _refused(patch_jpeg_size(jpeg, 30000, 30000))
    assert (error.reason, error.status) == ("too_many_pixels", RESOURCE_EXHAUSTED)
    error = _refused(patch_jpeg_size(jpeg, 9000, 40))
    assert (error.reason, error.status) == ("side_too_long", RESOURCE_EXHAUSTED)


def test_too_small(no_decoding):
    error = _refused(encode(random_image(0, 16, 64), ".png"))
    assert (error.reason, error.status) == ("too_small", INVALID_ARGUMENT)
    assert "64x16" in str(error)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_cut_short_after_the_header_is_truncated(ext):
    data = encode(random_image(9, 48, 64), ext)
    end = encoded_module.sniff(data).header_end
    for n in (end, (end + len(data)) // 2, len(data) - 13, len(data) - 1):
        error = _refused(data[:n])
        assert (error.reason, error.status) == ("truncated", INVALID_ARGUMENT), n


def test_undecodable_png_with_all_markers_is_corrupt():
    data = bytearray(encode(random_image(10, 48, 64), ".png"))
    idat = data.find(b"IDAT")
    data[idat + 4:idat + 40] = bytes(36)  # zlib header and data destroyed, chunk layout intact
    error = _refused(bytes(data))
    assert (error.reason, error.status) == ("corrupt", INVALID_ARGUMENT)
    assert "64x48" in str(error)


def test_jpeg_process_the_decoder_refuses_is_corrupt():
    data = bytearray(encode(random_image(11, 48, 64), ".jpg"))
    data[sof_offset(bytes(data)) + 1] = 0xCD  # SOF13: differential (hierarchical) arithmetic
    error = _refused(bytes(data))
    assert error.reason == "corrupt"


def test_decoded_size_disagreeing_with_the_header_is_corrupt(monkeypatch):
    monkeypatch.setattr(encoded_module, "decode_image", lambda data, source: np.zeros((40, 40, 3), np.uint8))
    error = _refused(encode(random_image(0, 48, 64), ".png"))
    assert error.reason == "corrupt"
    assert "decoded to 40x40 but its header says 64x48" in str(error)


def test_decoder_exception_is_corrupt(monkeypatch):
    def raises(data, source):
        raise cv2.error("simulated decoder failure")
    monkeypatch.setattr(encoded_module, "decode_image", raises)
    error = _refused(encode(random_image(0, 48, 64), ".png"))
    assert error.reason == "corrupt"
    assert "simulated decoder failure" in str(error)


@pytest.mark.parametrize(("data", "limits", "match"), [
    ("not bytes", FrameLimits(), "frame data must be bytes"),
    (b"\x89PNG", {"max_pixels": 10}, "limits must be FrameLimits"),
])
def test_caller_bugs_are_type_errors(data, limits, match):
    with pytest.raises(TypeError, match=match):
        decode_encoded(data, limits)


# -- never crash, whatever the bytes ---------------------------------------------------------------

SMALL_LIMITS = FrameLimits(max_encoded_bytes=64 * 1024, max_pixels=80 * 80, max_side=100, min_side=8)
_BASES = [
    encode(random_image(20, 32, 40), ".png"),
    encode(random_image(21, 40, 32, channels=1), ".png"),
    encode(random_image(22, 32, 32, channels=4), ".png"),
    encode(smooth_image(23, 32, 48), ".jpg"),
    encode(smooth_image(24, 40, 32), ".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
    _pil(Image.fromarray(smooth_image(25, 32, 40)).convert("CMYK"), "JPEG"),
]


def _valid_or_frame_error(data: bytes, limits: FrameLimits) -> None:
    try:
        image = decode_encoded(data, limits)
    except FrameError as error:
        assert error.status in (INVALID_ARGUMENT, RESOURCE_EXHAUSTED)
        event(error.reason)
        return
    event("decoded")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    height, width = image.shape[:2]
    assert limits.min_side <= min(height, width) and max(height, width) <= limits.max_side
    assert height * width <= limits.max_pixels


@settings(max_examples=300, deadline=None, database=None)
@given(prefix=st.sampled_from([b"", b"\xff\xd8", PNG_SIGNATURE, PNG_SIGNATURE + ihdr(40, 40)]),
       data=st.binary(max_size=512))
def test_arbitrary_bytes_never_crash(prefix, data):
    """Random bytes, also behind a JPEG or PNG signature so they reach the header parsers."""
    _valid_or_frame_error(prefix + data, SMALL_LIMITS)


@st.composite
def mutated_images(draw) -> bytes:
    """A valid small JPEG/PNG with a few bytes flipped, cut, inserted or a size field rewritten."""
    data = bytearray(draw(st.sampled_from(_BASES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "size"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "size" and len(data) > 30:
            offset = 16 if data.startswith(b"\x89PNG") else max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2")) + 5
            if offset > 0 and offset + 4 <= len(data):
                struct.pack_into(">H", data, offset, draw(st.integers(0, 65535)))
    return bytes(data)


@settings(max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_images())
def test_mutated_images_never_crash(data):
    _valid_or_frame_error(data, SMALL_LIMITS)
    _valid_or_frame_error(data, FrameLimits())


# -- decode cost: a progressive JPEG's scans -------------------------------------------------------

def test_a_camera_progressive_jpeg_decodes():
    from .helpers import scan_bomb

    jpeg = scan_bomb(0)  # as the encoder wrote it: libjpeg's progressive script
    assert 2 <= jpeg.count(b"\xff\xda") <= 12
    assert decode_encoded(jpeg).shape == (256, 512, 3)


def test_a_jpeg_of_thousands_of_tiny_scans_is_refused_before_decoding(no_decoding):
    """10,000 scans in 467 KB cost 13 s of server CPU at 24 MP: all inside the byte and pixel limits."""
    from .helpers import scan_bomb

    bomb = scan_bomb(2000)
    assert len(bomb) < FrameLimits().max_encoded_bytes
    error = _refused(bomb)
    assert error.reason == "too_many_scans" and error.status == RESOURCE_EXHAUSTED
    scans = bomb.count(b"\xff\xda")
    assert scans > 2000 and f"has {scans} scans, more than the 64" in str(error)


def test_the_scan_limit_is_the_servers_to_set(no_decoding):
    from .helpers import scan_bomb

    jpeg = scan_bomb(0)
    scans = jpeg.count(b"\xff\xda")
    assert _refused(jpeg, FrameLimits(max_jpeg_scans=scans - 1)).reason == "too_many_scans"
    with pytest.raises(ValueError, match="max_jpeg_scans must be >= 1"):
        FrameLimits(max_jpeg_scans=0)


def test_scans_at_the_limit_are_decoded():
    from .helpers import scan_bomb

    jpeg = scan_bomb(0)
    assert decode_encoded(jpeg, FrameLimits(max_jpeg_scans=jpeg.count(b"\xff\xda"))).shape == (256, 512, 3)

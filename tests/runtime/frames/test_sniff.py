from __future__ import annotations

import struct

import cv2
import pytest

from muselens.runtime.frames.frame_error import FrameError
from muselens.runtime.frames.sniff import JPEG, MAX_JPEG_MARKERS, PNG, sniff

from .helpers import PNG_SIGNATURE, chunk, encode, ihdr, patch_jpeg_size, random_image, sof_offset

SOI = b"\xff\xd8"


def _reason(data: bytes) -> str:
    with pytest.raises(FrameError) as info:
        sniff(data)
    return info.value.reason


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def _sof(width: int, height: int, components: int = 3, marker: int = 0xC0, precision: int = 8) -> bytes:
    body = struct.pack(">BHHB", precision, height, width, components)
    body += b"".join(bytes([i + 1, 0x11, 0]) for i in range(components))
    return _segment(marker, body)


@pytest.mark.parametrize(("image", "params", "channels"), [
    (random_image(0, 48, 64), (), 3),
    (random_image(1, 50, 70, channels=1), (), 1),
    (random_image(2, 40, 33), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), 3),
])
def test_jpeg_header(image, params, channels):
    data = encode(image, ".jpg", params)
    header = sniff(data)
    assert (header.format, header.width, header.height) == (JPEG, image.shape[1], image.shape[0])
    assert (header.channels, header.bit_depth) == (channels, 8)
    assert header.header_end == sof_offset(data) + 2 + 8 + 3 * channels


@pytest.mark.parametrize(("image", "params", "channels", "depth"), [
    (random_image(0, 48, 64), (), 3, 8),
    (random_image(1, 20, 30, channels=1), (), 1, 8),
    (random_image(2, 20, 30, channels=4), (), 4, 8),
    (random_image(3, 20, 30).astype("uint16") * 257, (), 3, 16),
])
def test_png_header(image, params, channels, depth):
    header = sniff(encode(image, ".png", params))
    assert (header.format, header.width, header.height) == (PNG, image.shape[1], image.shape[0])
    assert (header.channels, header.bit_depth) == (channels, depth)
    assert header.header_end == 33


def test_accepts_bytearray_and_memoryview():
    data = encode(random_image(0), ".png")
    assert sniff(bytearray(data)) == sniff(memoryview(data)) == sniff(data)


@pytest.mark.parametrize("data", [5, "\xff\xd8"])
def test_not_bytes_is_a_type_error(data):
    with pytest.raises(TypeError, match="must be bytes"):
        sniff(data)


def test_huge_declared_sizes_are_read_not_refused():
    """Sniffing only reports; refusing is the limits' job (and no pixel is allocated here)."""
    png = PNG_SIGNATURE + ihdr(30000, 30000, depth=1, colour=0)
    assert (sniff(png).width, sniff(png).height) == (30000, 30000)
    jpeg = patch_jpeg_size(encode(random_image(0), ".jpg"), 65535, 65535)
    assert (sniff(jpeg).width, sniff(jpeg).height) == (65535, 65535)


def test_empty():
    assert _reason(b"") == "empty"


@pytest.mark.parametrize(("data", "seen"), [
    (b"GIF89a" + bytes(20), "GIF"),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(20), "WebP"),
    (b"BM" + bytes(30), "BMP"),
    (b"II*\x00" + bytes(20), "TIFF"),
    (b"\x00\x00\x00\x18ftypheic" + bytes(20), "ISO media"),
    (b"%PDF-1.7\n", "PDF"),
])
def test_unknown_format_names_what_it_looks_like(data, seen):
    with pytest.raises(FrameError, match=f"neither JPEG nor PNG .looks like {seen}") as info:
        sniff(data)
    assert info.value.reason == "unknown_format"


@pytest.mark.parametrize("ext", [".bmp", ".tiff", ".webp"])
def test_unknown_format_from_a_real_encoder(ext):
    assert _reason(encode(random_image(0), ext)) == "unknown_format"


def test_unknown_format_shows_the_first_bytes():
    with pytest.raises(FrameError, match="starts with 68 65 6c 6c 6f"):
        sniff(b"hello world")


def test_every_prefix_of_a_header_is_truncated():
    jpeg = encode(random_image(0), ".jpg")
    png = encode(random_image(0), ".png")
    for data, end in ((jpeg, sniff(jpeg).header_end), (png, 33)):
        for n in range(1, end):
            assert _reason(data[:n]) == "truncated", n
        sniff(data[:end])  # the header alone is enough


def test_jpeg_walk_skips_app_segments_restart_markers_fill_and_stray_bytes():
    """Mirrors libjpeg's marker reader, so both see the same frame header."""
    data = (SOI + _segment(0xE0, b"JFIF\x00" + bytes(9)) + b"\xff\xd3" + b"\xff\xff\xff"
            + _segment(0xFE, b"comment \xff\xd9 inside") + b"junk" + b"\xff\x00"
            + _segment(0xE1, bytes(5000)) + _sof(640, 480))
    header = sniff(data)
    assert (header.width, header.height, header.header_end) == (640, 480, len(data))


@pytest.mark.parametrize("marker", [0xC1, 0xC2, 0xC3, 0xC5, 0xC9, 0xCB, 0xCF])
def test_jpeg_other_sof_markers(marker):
    assert sniff(SOI + _sof(100, 50, marker=marker)).height == 50


@pytest.mark.parametrize("marker", [0xC4, 0xC8, 0xCC])
def test_jpeg_dht_jpg_dac_are_not_frame_headers(marker):
    header = sniff(SOI + _segment(marker, _sof(1, 1)[4:]) + _sof(100, 50))
    assert (header.width, header.height) == (100, 50)


@pytest.mark.parametrize(("data", "match"), [
    (SOI + _segment(0xDA, bytes(10)) + _sof(10, 10), "scan data .SOS. before"),
    (SOI + b"\xff\xd9", "ends .EOI. before"),
    (SOI + SOI + _sof(10, 10), "second start-of-image"),
    (SOI + b"\xff\xe0\x00\x01" + bytes(10), "length 1 < 2"),
    (SOI + b"\xff\xc0\x00\x0e" + struct.pack(">BHHB", 8, 10, 10, 3) + bytes(9), "length 14, expected 17"),
    (SOI + _sof(640, 0), "empty image .640x0"),
    (SOI + _sof(0, 480), "empty image .0x480"),
    (SOI + _sof(640, 480, components=0), "0 components"),
])
def test_jpeg_corrupt_headers(data, match):
    with pytest.raises(FrameError, match=match) as info:
        sniff(data)
    assert info.value.reason == "corrupt"


def test_jpeg_marker_walk_is_bounded():
    """A hostile run of markers costs at most MAX_JPEG_MARKERS steps, then is refused."""
    many = b"\xff\x01" * (MAX_JPEG_MARKERS - 1)
    assert sniff(SOI + many + _sof(64, 48)).width == 64
    with pytest.raises(FrameError, match=f"more than {MAX_JPEG_MARKERS} markers") as info:
        sniff(SOI + many + b"\xff\xfe\x00\x02" + _sof(64, 48))
    assert info.value.reason == "corrupt"


def test_jpeg_segment_running_past_the_end_is_truncated():
    assert _reason(SOI + b"\xff\xe0\x10\x00" + bytes(100)) == "truncated"
    assert _reason(SOI + _sof(640, 480)[:-2]) == "truncated"


def _png(header: bytes) -> bytes:
    return PNG_SIGNATURE + header + chunk(b"IEND", b"")


@pytest.mark.parametrize(("data", "match"), [
    (PNG_SIGNATURE + chunk(b"gAMA", bytes(4)) + ihdr(10, 10), "must start with a 13-byte IHDR"),
    (PNG_SIGNATURE + chunk(b"IHDR", bytes(14)) + bytes(10), "must start with a 13-byte IHDR"),
    (_png(ihdr(0, 10)), "invalid size 0x10"),
    (_png(ihdr(10, 2**31)), "invalid size 10x2147483648"),
    (_png(ihdr(10, 10, colour=5)), "unknown colour type 5"),
    (_png(ihdr(10, 10, depth=4, colour=2)), "colour type 2 cannot have bit depth 4"),
    (_png(ihdr(10, 10, depth=16, colour=3)), "colour type 3 cannot have bit depth 16"),
    (_png(ihdr(10, 10, interlace=2)), "interlace 2"),
])
def test_png_corrupt_headers(data, match):
    with pytest.raises(FrameError, match=match) as info:
        sniff(data)
    assert info.value.reason == "corrupt"


def test_png_bad_crc():
    data = bytearray(_png(ihdr(10, 10)))
    data[20] ^= 0x01  # inside the width
    with pytest.raises(FrameError, match="CRC") as info:
        sniff(bytes(data))
    assert info.value.reason == "corrupt"

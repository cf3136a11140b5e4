"""Reading an encoded frame's format and size from its header, without decoding a pixel.

A decompression bomb is a small file whose header claims a huge image (a 30000x30000 PNG of
zeros compresses to a few hundred kilobytes). Decoders allocate the full image first, so the
only safe place to refuse it is here, before decoding.

JPEG: the walk mirrors libjpeg (which OpenCV uses): after SOI it looks for the next marker
(skipping stray bytes and 0xFF fill as libjpeg does), skips standalone markers (TEM, RSTn) and
length-prefixed segments, and stops at the first SOFn (C0-CF except DHT C4, JPG C8, DAC CC).
libjpeg refuses a second SOF, an SOS or EOI before the SOF, and a zero dimension; so does this.
Byte scans run in C and at most ``MAX_JPEG_MARKERS`` markers are read, so even 8 MiB of
hostile markers costs milliseconds.
PNG: the signature and the IHDR chunk (which must come first), CRC included.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from muselens.core import checks
from muselens.runtime.frames.frame_error import FrameError

JPEG = "jpeg"
PNG = "png"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"

# SOFn markers: frame headers carrying the image size. C4 (DHT), C8 (JPG), CC (DAC) are not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7 (SOI and EOI are handled apart).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_SOS, _EOI, _SOI = 0xDA, 0xD9, 0xD8
# Real JPEGs have a few dozen markers before SOF (APPn, DQT, DHT, DRI, COM; an ICC profile
# split into APP2 chunks at most 255). Capping the walk bounds the work a hostile frame costs.
MAX_JPEG_MARKERS = 1024
_NOT_FF = re.compile(rb"[^\xff]")

# PNG colour type -> (channels in the file, allowed bit depths). A palette image holds RGB entries.
_PNG_COLOUR_TYPES = {
    0: (1, (1, 2, 4, 8, 16)),  # grey
    2: (3, (8, 16)),           # RGB
    3: (3, (1, 2, 4, 8)),      # palette
    4: (2, (8, 16)),           # grey + alpha
    6: (4, (8, 16)),           # RGBA
}
_PNG_MAX_DIMENSION = 2**31 - 1


@dataclass(frozen=True)
class ImageHeader:
    """What an encoded frame's header declares.

    ``channels`` are the colour components stored in the file (JPEG: 1 grey, 3 YCbCr, 4 CMYK;
    PNG: 1 grey, 2 grey+alpha, 3 RGB or palette, 4 RGBA), ``bit_depth`` bits per sample.
    ``header_end`` is the offset just past the header, where the image data may start.
    """

    format: str
    width: int
    height: int
    channels: int
    bit_depth: int
    header_end: int


def _looks_like(data: bytes) -> str | None:
    """Name a few common non-JPEG/PNG formats, so the error says what the client sent."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:2] == b"BM":
        return "BMP"
    if data[4:8] == b"ftyp":
        return "ISO media (HEIF/AVIF/MP4)"
    if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or data[:4] == b"\xff\x4f\xff\x51":
        return "JPEG 2000"
    if data[:2] == b"\xff\x0a" or data[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "JPEG XL"
    if data[:4] == b"%PDF":
        return "PDF"
    return None


def sniff(data: bytes | bytearray | memoryview) -> ImageHeader:
    """The format and declared size of a JPEG or PNG, or :class:`FrameError` (nothing is decoded)."""
    data = checks.byte_string(data, "frame data")
    if not data:
        raise FrameError("empty", "frame has no data")
    if data.startswith(JPEG_SOI):
        return _sniff_jpeg(data)
    if data.startswith(PNG_SIGNATURE):
        return _sniff_png(data)
    if len(data) < len(PNG_SIGNATURE) and (PNG_SIGNATURE.startswith(data) or JPEG_SOI.startswith(data)):
        raise FrameError("truncated", f"frame of {len(data)} bytes stops inside the JPEG/PNG signature")
    seen = _looks_like(data)
    what = f"looks like {seen}" if seen else f"starts with {data[:8].hex(' ')}"
    raise FrameError("unknown_format", f"frame is neither JPEG nor PNG ({what})")


def _truncated_jpeg(pos: int, n: int) -> FrameError:
    return FrameError("truncated", f"JPEG of {n} bytes ends at offset {pos}, before its frame header (SOF)")


def _sniff_jpeg(data: bytes) -> ImageHeader:
    n = len(data)
    pos = 2
    for _ in range(MAX_JPEG_MARKERS):
        # libjpeg's next_marker: skip anything up to 0xFF, then fill bytes; FF00 is no marker.
        pos = data.find(b"\xff", pos)
        found = _NOT_FF.search(data, pos) if pos >= 0 else None
        if found is None:
            raise _truncated_jpeg(n, n)
        pos = found.start()
        marker = data[pos]
        pos += 1
        if marker == 0x00 or marker in _STANDALONE:
            continue
        if marker == _SOI:
            raise FrameError("corrupt", f"JPEG has a second start-of-image marker at offset {pos - 2}")
        if marker == _EOI:
            raise FrameError("corrupt", "JPEG ends (EOI) before any frame header (SOF)")
        if marker == _SOS:
            raise FrameError("corrupt", "JPEG has scan data (SOS) before any frame header (SOF)")
        if pos + 2 > n:
            raise _truncated_jpeg(pos, n)
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise FrameError("corrupt", f"JPEG segment FF{marker:02X} at offset {pos - 2} has length {length} < 2")
        if marker in _SOF_MARKERS:
            return _jpeg_frame_header(data, pos, length, marker)
        pos += length
        if pos > n:
            raise _truncated_jpeg(n, n)
    raise FrameError("corrupt", f"JPEG has more than {MAX_JPEG_MARKERS} markers before its frame header")


def _jpeg_frame_header(data: bytes, pos: int, length: int, marker: int) -> ImageHeader:
    """Parse SOFn at ``pos`` (its length field): precision, height, width, components."""
    if pos + 8 > len(data):
        raise _truncated_jpeg(len(data), len(data))
    precision, height, width, components = struct.unpack_from(">BHHB", data, pos + 2)
    if length != 8 + 3 * components:
        raise FrameError("corrupt", f"JPEG frame header SOF{marker - 0xC0} has length {length}, "
                                    f"expected {8 + 3 * components} for {components} components")
    if width == 0 or height == 0 or components == 0:
        raise FrameError("corrupt", f"JPEG frame header declares an empty image "
                                    f"({width}x{height}, {components} components)")
    end = pos + length
    if end > len(data):
        raise _truncated_jpeg(len(data), len(data))
    return ImageHeader(JPEG, width, height, components, precision, end)


def _sniff_png(data: bytes) -> ImageHeader:
    start = len(PNG_SIGNATURE)
    end = start + 8 + 13 + 4  # length, type, IHDR data, CRC
    if len(data) < end:
        raise FrameError("truncated", f"PNG of {len(data)} bytes stops inside its IHDR header ({end} bytes)")
    length, kind = struct.unpack_from(">I4s", data, start)
    if kind != b"IHDR" or length != 13:
        raise FrameError("corrupt", f"PNG must start with a 13-byte IHDR chunk, found {kind!r} of {length} bytes")
    body = data[start + 4:start + 8 + 13]
    (crc,) = struct.unpack_from(">I", data, start + 8 + 13)
    if zlib.crc32(body) != crc:
        raise FrameError("corrupt", "PNG IHDR chunk fails its CRC check")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", body, 4)
    if not (0 < width <= _PNG_MAX_DIMENSION and 0 < height <= _PNG_MAX_DIMENSION):
        raise FrameError("corrupt", f"PNG declares an invalid size {width}x{height}")
    if colour not in _PNG_COLOUR_TYPES:
        raise FrameError("corrupt", f"PNG declares an unknown colour type {colour}")
    channels, depths = _PNG_COLOUR_TYPES[colour]
    if depth not in depths:
        raise FrameError("corrupt", f"PNG colour type {colour} cannot have bit depth {depth}")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise FrameError("corrupt", f"PNG declares unknown methods (compression {compression}, "
                                    f"filter {filtering}, interlace {interlace})")
    return ImageHeader(PNG, width, height, channels, depth, end)

"""The corpus's frame categories: encoded images (truncated, corrupt, foreign, too small, bombs,
valid variants, too large) and raw frames (valid, size mismatch, bad dimensions, too large,
unknown pixel format), each with the outcome the service's contract gives it."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import cv2
import numpy as np

from muselens.benchmarks.corpus_cases import (LAST_IN_STREAM, OK, OK_ONLY, Built, Outcome, category, invalid)
from muselens.benchmarks.corpus_images import (flip_bits, pil_jpeg, png_chunks, sof_offset, png_bomb, png_bytes,
                                               smooth_image)
from muselens.core.data.images import encode_jpeg
from muselens.v1 import recognition_pb2 as pb

if TYPE_CHECKING:
    from muselens.benchmarks.corpus import Corpus

# -- encoded frames ---------------------------------------------------------------------------


@category("truncated_jpeg", 6)
def _truncated_jpeg(c: Corpus, rng: np.random.Generator) -> Built:
    """A JPEG cut anywhere from inside its signature to just before its end."""
    data = encode_jpeg(c.good_image(rng))
    cut = int(rng.integers(1, int(len(data) * 0.97)))
    return pb.Frame(image=pb.Image(encoded=data[:cut])), invalid("truncated"), f"JPEG cut to {cut}/{len(data)} bytes"


@category("truncated_png", 6)
def _truncated_png(c: Corpus, rng: np.random.Generator) -> Built:
    """A PNG cut anywhere before its IEND chunk."""
    data = png_bytes(c.good_image(rng, high=200), 2)
    cut = int(rng.integers(1, len(data) - 12))
    return pb.Frame(image=pb.Image(encoded=data[:cut])), invalid("truncated"), f"PNG cut to {cut}/{len(data)} bytes"


@category("corrupt_png_header", 4)
def _corrupt_png_header(c: Corpus, rng: np.random.Generator) -> Built:
    """Bits flipped in the PNG IHDR chunk (length, type, size, depth, CRC): its CRC or layout fails."""
    data = png_bytes(c.good_image(rng, high=160), 2)
    flips = int(rng.integers(1, 4))
    bad = flip_bits(data, 8, 33, rng, flips)
    if bad == data:  # an even number of flips of one bit cancelled out
        bad = flip_bits(data, 8, 33, rng, 1)
    return pb.Frame(image=pb.Image(encoded=bad)), invalid("corrupt"), f"{flips} bit flip(s) in the IHDR chunk"


@category("corrupt_png_data", 4)
def _corrupt_png_data(c: Corpus, rng: np.random.Generator) -> Built:
    """Bits flipped in an IDAT chunk's data: libpng's CRC check refuses it."""
    data = png_bytes(c.good_image(rng, high=200), 2)
    kind, pos, length = next(chunk for chunk in png_chunks(data) if chunk[0] == b"IDAT")
    bad = flip_bits(data, pos + 8, pos + 8 + length, rng, 1)
    return pb.Frame(image=pb.Image(encoded=bad)), invalid("corrupt"), f"1 bit flip in a {length}-byte IDAT chunk"


@category("corrupt_jpeg_data", 4)
def _corrupt_jpeg_data(c: Corpus, rng: np.random.Generator) -> Built:
    """Bits flipped in JPEG entropy-coded data: libjpeg decodes wrong pixels or fails; either is right."""
    data = encode_jpeg(c.good_image(rng))
    sos = data.find(b"\xff\xda")
    start = sos + 2 + struct.unpack_from(">H", data, sos + 2)[0]
    flips = int(rng.integers(1, 9))
    bad = flip_bits(data, start, len(data) - 2, rng, flips)
    return (pb.Frame(image=pb.Image(encoded=bad)), (Outcome(OK), Outcome("INVALID_ARGUMENT", "corrupt")),
            f"{flips} bit flip(s) in {len(data) - 2 - start} bytes of scan data")


_JPEG_BREAKS = ("sos_before_sof", "eoi_before_sof", "second_soi", "sof_length", "zero_size", "markers_flood",
                "segment_length")


@category("corrupt_jpeg_structure", 5)
def _corrupt_jpeg_structure(c: Corpus, rng: np.random.Generator) -> Built:
    """A JPEG whose marker structure is broken before its frame header (as libjpeg would refuse it)."""
    data = encode_jpeg(c.good_image(rng))
    how = _JPEG_BREAKS[int(rng.integers(len(_JPEG_BREAKS)))]
    head, tail = data[:2], data[2:]
    if how == "sos_before_sof":
        bad = head + b"\xff\xda\x00\x08" + rng.bytes(6) + tail
    elif how == "eoi_before_sof":
        bad = head + b"\xff\xd9" + tail
    elif how == "second_soi":
        bad = head + b"\xff\xd8" + tail
    elif how == "markers_flood":
        bad = head + b"\xff\xfe\x00\x02" * int(rng.integers(1025, 3000)) + tail
    elif how == "segment_length":
        bad = head + b"\xff\xfe" + struct.pack(">H", int(rng.integers(0, 2))) + tail
    else:
        sof = sof_offset(data)
        out = bytearray(data)
        if how == "sof_length":
            length = struct.unpack_from(">H", data, sof + 2)[0]
            wrong = int(rng.integers(2, 64))
            out[sof + 2:sof + 4] = struct.pack(">H", wrong if wrong != length else length + 3)
        else:  # zero_size: height or width 0
            offset = sof + 5 + 2 * int(rng.integers(2))
            out[offset:offset + 2] = b"\x00\x00"
        bad = bytes(out)
    return pb.Frame(image=pb.Image(encoded=bad)), invalid("corrupt"), f"JPEG {how}"


@category("empty", 3)
def _empty(c: Corpus, rng: np.random.Generator) -> Built:
    """No image at all, or encoded bytes of length 0."""
    if rng.random() < 0.5:
        return pb.Frame(), invalid("empty"), "Frame without image"
    return pb.Frame(image=pb.Image(encoded=b"")), invalid("empty"), "Image.encoded of 0 bytes"


_FOREIGN = (b"GIF89a", b"GIF87a", b"RIFF\x10\x00\x00\x00WEBPVP8 ", b"II*\x00", b"MM\x00*", b"BM", b"%PDF-1.7\n",
            b"\x00\x00\x00\x18ftypheic", b"<!DOCTYPE html>", b"{\"frame\": 1}", b"\x1f\x8b\x08\x00")


@category("not_an_image", 5)
def _not_an_image(c: Corpus, rng: np.random.Generator) -> Built:
    """Random bytes, or the header of another format (GIF, WebP, TIFF, BMP, PDF, HEIF, HTML, gzip...)."""
    n = int(rng.integers(1, 8192))
    if rng.random() < 0.5:
        head = _FOREIGN[int(rng.integers(len(_FOREIGN)))]
        data = head + rng.bytes(n)
        note = f"{head[:8]!r} + {n} random bytes"
    else:
        data = bytearray(rng.bytes(n))
        while data[0] in (0xFF, 0x89):  # JPEG/PNG signatures start with these
            data[0] = int(rng.integers(256))
        data, note = bytes(data), f"{n} random bytes"
    return pb.Frame(image=pb.Image(encoded=data)), invalid("unknown_format"), note


@category("too_small", 4)
def _too_small(c: Corpus, rng: np.random.Generator) -> Built:
    """A valid JPEG or PNG with a side below the minimum (1x1 included)."""
    if rng.random() < 0.2:
        h = w = 1
    else:
        h, w = int(rng.integers(1, c.limits.min_side)), int(rng.integers(1, 400))
        if rng.random() < 0.5:
            h, w = w, h
    image = smooth_image(rng, h, w)
    data = encode_jpeg(image) if rng.random() < 0.5 else png_bytes(image, 2)
    return pb.Frame(image=pb.Image(encoded=data)), (c.size_outcome(w, h),), f"{w}x{h}"


def _bomb_size(c: Corpus, rng: np.random.Generator, max_side: int) -> tuple[int, int]:
    roll = rng.random()
    if roll < 0.25:
        return 30_000, 30_000
    if roll < 0.6:  # too many pixels
        w = int(rng.integers(4_000, max_side + 1))
        h = int(rng.integers(c.limits.max_pixels // w + 1, max_side + 1))
        return (w, h) if rng.random() < 0.5 else (h, w)
    side = int(rng.integers(c.limits.max_side + 1, max_side + 1))  # a long side, few pixels
    other = int(rng.integers(c.limits.min_side, max(c.limits.min_side + 1, c.limits.max_pixels // side)))
    return (side, other) if rng.random() < 0.5 else (other, side)


@category("bomb_png", 4)
def _bomb_png(c: Corpus, rng: np.random.Generator) -> Built:
    """A small PNG whose IHDR claims a huge image (decompression bomb)."""
    w, h = _bomb_size(c, rng, 200_000)
    data = png_bomb(w, h, rng)
    return pb.Frame(image=pb.Image(encoded=data)), (c.size_outcome(w, h),), f"PNG of {len(data)} bytes claiming {w}x{h}"


@category("bomb_jpeg", 4)
def _bomb_jpeg(c: Corpus, rng: np.random.Generator) -> Built:
    """A small JPEG whose SOF claims a huge image (at most 65535 a side)."""
    w, h = _bomb_size(c, rng, 65_535)
    data = bytearray(encode_jpeg(c.good_image(rng, high=128)))
    sof = sof_offset(bytes(data))
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return (pb.Frame(image=pb.Image(encoded=bytes(data))), (c.size_outcome(w, h),),
            f"JPEG of {len(data)} bytes claiming {w}x{h}")


_VALID_KINDS = ("jpeg_rgb", "jpeg_grey", "jpeg_cmyk", "jpeg_progressive", "png_rgb", "png_grey", "png_grey16",
                "png_rgb16", "png_rgba", "png_rgba16", "png_grey_alpha", "png_palette")


@category("valid_image_variant", 10)
def _valid_variant(c: Corpus, rng: np.random.Generator) -> Built:
    """Valid frames in every layout a camera or app may send: grey, 16-bit, alpha, palette, CMYK, progressive."""
    kind = _VALID_KINDS[int(rng.integers(len(_VALID_KINDS)))]
    image = c.good_image(rng, high=400)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    alpha = rng.integers(0, 256, size=image.shape[:2], dtype=np.uint8)
    if kind == "jpeg_rgb":
        data = encode_jpeg(image, int(rng.integers(30, 100)))
    elif kind == "jpeg_grey":
        data = encode_jpeg(grey, int(rng.integers(30, 100)))
    elif kind == "jpeg_cmyk":
        data = pil_jpeg(image, mode="CMYK", quality=int(rng.integers(50, 96)))
    elif kind == "jpeg_progressive":
        data = pil_jpeg(image, progressive=True, quality=int(rng.integers(50, 96)))
    elif kind == "png_rgb":
        data = png_bytes(image, 2)
    elif kind == "png_grey":
        data = png_bytes(grey, 0)
    elif kind == "png_grey16":
        data = png_bytes(grey.astype(np.uint16) * 257, 0)
    elif kind == "png_rgb16":
        data = png_bytes(image.astype(np.uint16) * 257, 2)
    elif kind == "png_rgba":
        data = png_bytes(np.dstack([image, alpha]), 6)
    elif kind == "png_rgba16":
        data = png_bytes(np.dstack([image, alpha]).astype(np.uint16) * 257, 6)
    elif kind == "png_grey_alpha":
        data = png_bytes(np.dstack([grey, alpha]), 4)
    else:  # png_palette
        palette = rng.integers(0, 256, size=(256, 3))
        data = png_bytes((grey // 1).astype(np.uint8), 3, palette)
    h, w = image.shape[:2]
    return pb.Frame(image=pb.Image(encoded=data)), OK_ONLY, f"{kind} {w}x{h}"


@category("too_large_encoded", 0.3)
def _too_large_encoded(c: Corpus, rng: np.random.Generator) -> Built:
    """More encoded bytes than the frame limit, yet within gRPC's receive limit: this frame only."""
    n = c.limits.max_encoded_bytes + int(rng.integers(1, 1 << 20))
    head = b"\xff\xd8" if rng.random() < 0.5 else b"\x89PNG\r\n\x1a\n"
    return (pb.Frame(image=pb.Image(encoded=head + rng.bytes(n))), (Outcome("RESOURCE_EXHAUSTED", "too_large"),),
            f"{n} encoded bytes")


@category("oversized_message", 0.1, stream=LAST_IN_STREAM)
def _oversized(c: Corpus, rng: np.random.Generator) -> Built:
    """A message above the server's gRPC receive limit: refused by gRPC, the stream ends."""
    return None, (Outcome("RESOURCE_EXHAUSTED"),), "oversized message"


# -- raw frames -------------------------------------------------------------------------------

_PACKED_BPP = {pb.PIXEL_FORMAT_RGB8: 3, pb.PIXEL_FORMAT_BGR8: 3, pb.PIXEL_FORMAT_RGBA8: 4, pb.PIXEL_FORMAT_BGRA8: 4,
               pb.PIXEL_FORMAT_GRAY8: 1}
_YUV = (pb.PIXEL_FORMAT_NV12, pb.PIXEL_FORMAT_NV21, pb.PIXEL_FORMAT_I420)
_FORMATS = (*_PACKED_BPP, *_YUV)


def _raw_size(fmt: int, w: int, h: int) -> int:
    return w * h * 3 // 2 if fmt in _YUV else w * h * _PACKED_BPP[fmt]


def _raw(data: bytes, w: int, h: int, fmt: int) -> pb.Frame:
    return pb.Frame(image=pb.Image(raw=pb.RawImage(data=data, width=w, height=h, pixel_format=fmt)))


def _raw_dims(c: Corpus, rng: np.random.Generator, fmt: int, high: int = 320) -> tuple[int, int]:
    w, h = (int(v) for v in rng.integers(c.limits.min_side, high + 1, size=2))
    if fmt in _YUV:
        w, h = w + w % 2, h + h % 2
    return w, h


@category("raw_valid", 6)
def _raw_valid(c: Corpus, rng: np.random.Generator) -> Built:
    """Raw pixels of every format with exactly the bytes their size needs."""
    fmt = _FORMATS[int(rng.integers(len(_FORMATS)))]
    w, h = _raw_dims(c, rng, fmt)
    data = rng.integers(0, 256, size=_raw_size(fmt, w, h), dtype=np.uint8).tobytes()
    return _raw(data, w, h, fmt), OK_ONLY, f"{pb.PixelFormat.Name(fmt)} {w}x{h}"


@category("raw_size_mismatch", 5)
def _raw_size_mismatch(c: Corpus, rng: np.random.Generator) -> Built:
    """Raw pixels whose byte count disagrees with width x height x format (stride padding, wrong format)."""
    fmt = _FORMATS[int(rng.integers(len(_FORMATS)))]
    w, h = _raw_dims(c, rng, fmt)
    need = _raw_size(fmt, w, h)
    roll = rng.random()
    if roll < 0.3:
        n = need + int(rng.integers(1, 64)) * h  # rows padded to a stride
    elif roll < 0.5:
        n = 0
    else:
        n = int(rng.integers(0, 2 * need))
        n = n if n != need else need - 1
    data = bytes(n)
    return _raw(data, w, h, fmt), invalid("size_mismatch"), f"{pb.PixelFormat.Name(fmt)} {w}x{h} with {n}/{need} bytes"


@category("raw_bad_dimensions", 3)
def _raw_bad_dimensions(c: Corpus, rng: np.random.Generator) -> Built:
    """Raw frames with a zero side, or an odd side for a 4:2:0 format."""
    if rng.random() < 0.5:
        fmt = _FORMATS[int(rng.integers(len(_FORMATS)))]
        w, h = (0, int(rng.integers(0, 500))) if rng.random() < 0.5 else (int(rng.integers(0, 500)), 0)
        return _raw(rng.bytes(int(rng.integers(0, 100))), w, h, fmt), invalid("bad_dimensions"), f"{w}x{h}"
    fmt = _YUV[int(rng.integers(len(_YUV)))]
    w, h = (int(v) for v in rng.integers(c.limits.min_side, 400, size=2))
    if w % 2 == 0 and h % 2 == 0:
        w += 1
    data = bytes(w * h * 3 // 2)
    return _raw(data, w, h, fmt), invalid("bad_dimensions"), f"{pb.PixelFormat.Name(fmt)} {w}x{h}"


@category("raw_too_large", 3)
def _raw_too_large(c: Corpus, rng: np.random.Generator) -> Built:
    """Raw frames whose declared size exceeds the limits (refused before the bytes are looked at)."""
    fmt = _FORMATS[int(rng.integers(len(_FORMATS)))]
    w, h = _bomb_size(c, rng, 2**32 - 1)
    if fmt in _YUV:
        w, h = w - w % 2, h - h % 2
    data = rng.bytes(int(rng.integers(0, 4096)))
    return _raw(data, w, h, fmt), (c.size_outcome(w, h),), f"{pb.PixelFormat.Name(fmt)} claiming {w}x{h}"


@category("unknown_pixel_format", 3)
def _unknown_pixel_format(c: Corpus, rng: np.random.Generator) -> Built:
    """Pixel format UNSPECIFIED or a value this server does not know (a newer client's enum)."""
    roll = rng.random()
    if roll < 0.2:
        fmt = 0
    elif roll < 0.6:
        fmt = int(rng.integers(max(_FORMATS) + 1, 1000))
    elif roll < 0.8:
        fmt = int(rng.integers(1000, 2**31))
    else:
        fmt = -int(rng.integers(1, 2**31))
    w, h = _raw_dims(c, rng, pb.PIXEL_FORMAT_RGB8, 128)
    return _raw(bytes(w * h * 3), w, h, fmt), invalid("bad_pixel_format"), f"pixel_format {fmt}"

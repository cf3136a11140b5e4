"""A seeded corpus of bad (and deliberately awkward but valid) requests, each with its expected outcome.

``Corpus(count, seed).case(i)`` builds case ``i`` on demand (deterministically from ``(seed, i)``),
so 10,000 cases never sit in memory at once. Each :class:`Case` is the serialized request bytes
(a ``pb.Frame`` for Recognize/StreamRecognize, a ``pb.EnrollRequest`` for Admin.Enroll, or raw
bytes that are no valid message at all), the call metadata, and the outcome(s) the server must
produce: the gRPC status name on a unary call with the reason slug of the error (the servicer
formats details as ``"<reason>: ..."``), or, on a stream, ``Recognition.error.code/.reason``
(``"OK"`` with reason ``""`` for a recognised frame).

What each category expects is the service's contract (protos/muselens/v1/recognition.proto,
:mod:`muselens.runtime.frames`, :mod:`muselens.runtime.recognition.options`), written down
here independently of the code that implements it. Bytes that are no valid protobuf are a
client error like a corrupt image (INVALID_ARGUMENT, reason ``malformed_message``; on a stream
that frame's error, with an empty ``frame_id`` as none could be read, and the stream goes on).
Two outcomes belong to gRPC itself, not to muselens, and end a stream instead of answering one
frame:

* a message larger than the server's receive limit: RESOURCE_EXHAUSTED before any of it is
  parsed; the HTTP/2 stream is reset, so a stream cannot continue after it;
* metadata that cannot be sent: a token with non-ASCII characters is refused by the client's
  gRPC core (INTERNAL, it never reaches the server), a token above gRPC's 16 KiB metadata hard
  limit is refused by the server's transport (RESOURCE_EXHAUSTED). Tokens between the 8 KiB
  soft and the 16 KiB hard limit are refused at random by gRPC, so the corpus avoids them.

Variety: every case draws its parameters (sizes, formats, cut points, flipped bits, enum
values, coordinates, token lengths) from its own seeded generator, so the 10,000 are not a
few cases repeated.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from muselens.core import checks
from muselens.core.data.images import encode_jpeg
from muselens.runtime.frames import FrameLimits, sniff
from muselens.runtime.recognition.options import MAX_TOP_K
from muselens.runtime.server.app import ServerConfig
from muselens.runtime.server.servicer import MAX_ENROL_PHOTOS
from muselens.v1 import recognition_pb2 as pb

RECOGNIZE = "Recognize"
ENROLL = "Enroll"
# How a case travels in a stream: with other frames, last (it ends the stream), alone (it
# carries its own call metadata), or not at all (not a Recognizer call).
IN_STREAM, LAST_IN_STREAM, OWN_STREAM, NO_STREAM = "frame", "last", "own", "none"
OK = "OK"
MALFORMED_PROTOBUF = "malformed_protobuf"


@dataclass(frozen=True)
class Outcome:
    """What a call produced: a gRPC status name (``OK``) and the muselens reason slug, if any."""

    status: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.status}/{self.reason}" if self.reason else self.status


@dataclass(frozen=True)
class Tokens:
    """The server's tokens, so cases can send right, wrong and malformed ones."""

    client: str
    admin: str

    def __post_init__(self) -> None:
        for role in ("client", "admin"):
            token = getattr(self, role)
            if not isinstance(token, str) or len(token) < 16 or not token.isascii():
                raise ValueError(f"{role} token must be an ASCII string of at least 16 characters")


@dataclass(frozen=True)
class Case:
    """One request and what the server must answer to it."""

    index: int
    category: str
    rpc: str
    stream: str
    expected: tuple[Outcome, ...]
    note: str
    payload: bytes | None = field(repr=False, default=None)
    oversize: int = 0  # payload is None: a Frame carrying this many encoded bytes, built on demand
    metadata: tuple[tuple[str, str], ...] | None = field(repr=False, default=None)  # None: the role's token

    @property
    def frame_id(self) -> str:
        return f"c{self.index}"

    @property
    def answered_frame_id(self) -> str:
        """The ``frame_id`` a stream's answer carries: none for bytes that are no Frame at all."""
        return "" if self.category == MALFORMED_PROTOBUF else self.frame_id

    def request(self) -> bytes:
        """The serialized request (oversized ones are built here, on demand)."""
        if self.payload is not None:
            return self.payload
        return pb.Frame(frame_id=self.frame_id, image=pb.Image(encoded=bytes(self.oversize))).SerializeToString()

    def accepts(self, outcome: Outcome) -> bool:
        return outcome in self.expected


# -- images ---------------------------------------------------------------------------------


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An RGB uint8 picture with structure (upscaled noise plus a shape): compresses like a photo."""
    small = rng.integers(0, 256, size=(max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    cv2.circle(image, centre, int(rng.integers(2, max(3, min(height, width) // 2))), colour, -1)
    return image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(samples: np.ndarray, colour_type: int, palette: np.ndarray | None = None) -> bytes:
    """A PNG of any colour type at 8 or 16 bits, written by hand (OpenCV writes only some).

    ``samples`` is (H, W) or (H, W, C) uint8/uint16 in the file's channel order.
    """
    h, w = samples.shape[:2]
    depth = 16 if samples.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(samples.astype(">u2" if depth == 16 else np.uint8)).reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    parts = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0))]
    if palette is not None:
        parts.append(_png_chunk(b"PLTE", palette.astype(np.uint8).tobytes()))
    parts += [_png_chunk(b"IDAT", zlib.compress(raw, 6)), _png_chunk(b"IEND", b"")]
    return b"".join(parts)


def png_bomb(width: int, height: int, rng: np.random.Generator) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (its IDAT holds a few rows of zeros)."""
    rows = int(rng.integers(1, 8))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(rows * (1 + min(width, 1 << 16) * 3)), 9)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _pil_jpeg(image: np.ndarray, **save) -> bytes:
    from PIL import Image

    mode = save.pop("mode", "RGB")
    picture = Image.fromarray(image)
    if mode != picture.mode:
        picture = picture.convert(mode)
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", **save)
    return buf.getvalue()


def _sof_offset(jpeg: bytes) -> int:
    """Offset of the SOFn marker (its 0xFF) of a JPEG muselens can read."""
    header = sniff(jpeg)
    return header.header_end - (8 + 3 * header.channels) - 2


def _png_chunks(png: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset of the chunk's length field, data length) of every chunk."""
    chunks, pos = [], 8
    while pos + 8 <= len(png):
        length, kind = struct.unpack_from(">I4s", png, pos)
        chunks.append((kind, pos, length))
        pos += 12 + length
    return chunks


def _flip_bits(data: bytes, start: int, stop: int, rng: np.random.Generator, flips: int) -> bytes:
    out = bytearray(data)
    for _ in range(flips):
        k = int(rng.integers(start, stop))
        out[k] ^= 1 << int(rng.integers(8))
    return bytes(out)


# -- the corpus -----------------------------------------------------------------------------

# (message, or (metadata, message); expected outcomes; a note on the parameters drawn)
Built = tuple[object, tuple[Outcome, ...], str]


class Corpus:
    """``count`` cases drawn with ``seed``; ``limits`` and ``max_receive`` are the server's."""

    def __init__(self, count: int, seed: int = 0, *, tokens: Tokens, limits: FrameLimits = FrameLimits(),
                 max_receive: int | None = None):
        checks.positive_int(count, "count")
        if not isinstance(tokens, Tokens):
            raise TypeError(f"tokens must be corpus.Tokens, got {type(tokens).__name__}")
        self.count, self.seed, self.tokens, self.limits = count, int(seed), tokens, limits
        self.max_receive = max_receive if max_receive is not None else ServerConfig(limits=limits).max_message_bytes
        names = list(CATEGORIES)
        weights = np.array([CATEGORIES[n].weight for n in names], dtype=np.float64)
        rng = np.random.default_rng([self.seed, 0xC0])
        # Every category at least once (when count allows), the rest drawn by weight.
        drawn = list(rng.choice(len(names), size=max(0, count - len(names)), p=weights / weights.sum()))
        order = (list(range(len(names))) + drawn)[:count]
        rng.shuffle(order)
        self.categories: list[str] = [names[k] for k in order]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Case]:
        return (self.case(i) for i in range(self.count))

    def case(self, index: int) -> Case:
        if not 0 <= index < self.count:
            raise IndexError(f"case {index} outside 0..{self.count - 1}")
        name = self.categories[index]
        spec = CATEGORIES[name]
        rng = np.random.default_rng([self.seed, index])
        message, expected, note = spec.build(self, rng)
        metadata = None
        if isinstance(message, tuple):  # (metadata, message): the case sends its own metadata
            metadata, message = message
        payload: bytes | None
        oversize = 0
        if message is None:
            payload, oversize = None, self.max_receive + int(rng.integers(1, 1 << 20))
            note = f"{note}: a Frame of {oversize} encoded bytes (receive limit {self.max_receive})"
        elif isinstance(message, bytes):  # frame_id first: the parser keeps the last, and there is none later
            frame_id = f"c{index}".encode()
            payload = b"\x0a" + _varint(len(frame_id)) + frame_id + message
        else:
            if isinstance(message, pb.Frame):
                message.frame_id = f"c{index}"
            payload = message.SerializeToString()
        return Case(index, name, spec.rpc, spec.stream, expected, note, payload, oversize, metadata)

    # -- shared building blocks ----------------------------------------------------------

    def good_image(self, rng: np.random.Generator, low: int = 48, high: int = 320) -> np.ndarray:
        low = max(low, self.limits.min_side)
        return smooth_image(rng, int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1)))

    def good_frame(self, rng: np.random.Generator, **options) -> pb.Frame:
        return pb.Frame(image=pb.Image(encoded=encode_jpeg(self.good_image(rng), int(rng.integers(60, 96)))),
                        options=pb.RecognizeOptions(**options))

    def size_outcome(self, width: int, height: int) -> Outcome:
        """The contract of :class:`FrameLimits` (pixels, then longest side, then shortest side)."""
        lim = self.limits
        if width * height > lim.max_pixels:
            return Outcome("RESOURCE_EXHAUSTED", "too_many_pixels")
        if max(width, height) > lim.max_side:
            return Outcome("RESOURCE_EXHAUSTED", "side_too_long")
        if min(width, height) < lim.min_side:
            return Outcome("INVALID_ARGUMENT", "too_small")
        return Outcome(OK)


def invalid(reason: str) -> tuple[Outcome, ...]:
    return (Outcome("INVALID_ARGUMENT", reason),)


OK_ONLY = (Outcome(OK),)


@dataclass(frozen=True)
class Category:
    weight: float
    build: Callable[[Corpus, np.random.Generator], Built]
    rpc: str = RECOGNIZE
    stream: str = IN_STREAM
    description: str = ""


CATEGORIES: dict[str, Category] = {}


def category(name: str, weight: float, *, rpc: str = RECOGNIZE, stream: str = IN_STREAM, description: str = ""):
    def register(build):
        CATEGORIES[name] = Category(weight, build, rpc, stream, description or (build.__doc__ or "").strip())
        return build

    return register


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
    bad = _flip_bits(data, 8, 33, rng, flips)
    if bad == data:  # an even number of flips of one bit cancelled out
        bad = _flip_bits(data, 8, 33, rng, 1)
    return pb.Frame(image=pb.Image(encoded=bad)), invalid("corrupt"), f"{flips} bit flip(s) in the IHDR chunk"


@category("corrupt_png_data", 4)
def _corrupt_png_data(c: Corpus, rng: np.random.Generator) -> Built:
    """Bits flipped in an IDAT chunk's data: libpng's CRC check refuses it."""
    data = png_bytes(c.good_image(rng, high=200), 2)
    kind, pos, length = next(chunk for chunk in _png_chunks(data) if chunk[0] == b"IDAT")
    bad = _flip_bits(data, pos + 8, pos + 8 + length, rng, 1)
    return pb.Frame(image=pb.Image(encoded=bad)), invalid("corrupt"), f"1 bit flip in a {length}-byte IDAT chunk"


@category("corrupt_jpeg_data", 4)
def _corrupt_jpeg_data(c: Corpus, rng: np.random.Generator) -> Built:
    """Bits flipped in JPEG entropy-coded data: libjpeg decodes wrong pixels or fails; either is right."""
    data = encode_jpeg(c.good_image(rng))
    sos = data.find(b"\xff\xda")
    start = sos + 2 + struct.unpack_from(">H", data, sos + 2)[0]
    flips = int(rng.integers(1, 9))
    bad = _flip_bits(data, start, len(data) - 2, rng, flips)
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
        sof = _sof_offset(data)
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
    sof = _sof_offset(bytes(data))
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
        data = _pil_jpeg(image, mode="CMYK", quality=int(rng.integers(50, 96)))
    elif kind == "jpeg_progressive":
        data = _pil_jpeg(image, progressive=True, quality=int(rng.integers(50, 96)))
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


# -- options ----------------------------------------------------------------------------------


@category("unknown_heatmap_kind", 3)
def _unknown_heatmap_kind(c: Corpus, rng: np.random.Generator) -> Built:
    """Heatmap kinds this server does not know, among known ones."""
    unknown = int(rng.integers(4, 2**31)) if rng.random() < 0.7 else -int(rng.integers(1, 2**31))
    kinds = [int(k) for k in rng.integers(0, 4, size=int(rng.integers(0, 3)))]
    kinds.insert(int(rng.integers(len(kinds) + 1)), unknown)
    frame = c.good_frame(rng, explain=bool(rng.random() < 0.5), heatmap_kinds=kinds)
    return frame, invalid("bad_heatmap_kind"), f"heatmap_kinds {kinds}"


@category("top_k_valid", 5)
def _top_k_valid(c: Corpus, rng: np.random.Generator) -> Built:
    """top_k 0 (the server's default) or 1..MAX_TOP_K (more than the gallery holds is fine)."""
    k = 0 if rng.random() < 0.3 else int(rng.integers(1, MAX_TOP_K + 1))
    return c.good_frame(rng, top_k=k), OK_ONLY, f"top_k {k}"


@category("top_k_absurd", 4)
def _top_k_absurd(c: Corpus, rng: np.random.Generator) -> Built:
    """top_k above the limit: 101, 2**31, 2**32 - 1 or anything between."""
    roll = rng.random()
    k = MAX_TOP_K + 1 if roll < 0.2 else 2**31 if roll < 0.35 else 2**32 - 1 if roll < 0.5 else int(
        rng.integers(MAX_TOP_K + 1, 2**32))
    return c.good_frame(rng, top_k=k), invalid("bad_top_k"), f"top_k {k}"


_ROI_BREAKS = ("inverted", "nan", "inf", "outside", "zero_area")


@category("roi_invalid", 5)
def _roi_invalid(c: Corpus, rng: np.random.Generator) -> Built:
    """Regions of interest that are no rectangle inside the frame: inverted, NaN, inf, outside, zero-area."""
    how = _ROI_BREAKS[int(rng.integers(len(_ROI_BREAKS)))]
    x0, x1 = sorted(float(v) for v in rng.uniform(0, 1, 2))
    y0, y1 = sorted(float(v) for v in rng.uniform(0, 1, 2))
    box = [x0, y0, x1 + 1e-3, y1 + 1e-3]
    slot = int(rng.integers(4))
    if how == "inverted":
        if rng.random() < 0.5:
            box[0], box[2] = box[2], box[0]
        else:
            box[1], box[3] = box[3], box[1]
    elif how == "nan":
        box[slot] = math.nan
    elif how == "inf":
        box[slot] = math.inf if rng.random() < 0.5 else -math.inf
    elif how == "outside":
        box[slot] = float(rng.uniform(1.01, 1e6)) if rng.random() < 0.5 else -float(rng.uniform(0.01, 1e6))
    else:  # zero_area
        if rng.random() < 0.5:
            box[2] = box[0]
        else:
            box[3] = box[1]
    roi = pb.RegionOfInterest(x0=box[0], y0=box[1], x1=box[2], y1=box[3])
    return c.good_frame(rng, region_of_interest=roi), invalid("bad_roi"), f"ROI {how} {box}"


@category("roi_too_small", 2)
def _roi_too_small(c: Corpus, rng: np.random.Generator) -> Built:
    """A valid rectangle too thin to hold any feature cell's centre (refused after inference)."""
    # Feature-cell centres sit at (j + 0.5) / w with w <= max_side / 32 cells: none lies within
    # 0.5 / (max_side / 32) of an edge, so a rectangle that thin along one edge holds none.
    margin = 0.5 * 32 / c.limits.max_side
    width = float(rng.uniform(1e-6, margin * 0.9))
    start = float(rng.uniform(0, margin - width)) if rng.random() < 0.5 else 1.0 - float(rng.uniform(width, margin))
    x0, x1 = start, min(1.0, start + width)
    box = [x0, 0.0, x1, 1.0] if rng.random() < 0.5 else [0.0, x0, 1.0, x1]
    roi = pb.RegionOfInterest(x0=box[0], y0=box[1], x1=box[2], y1=box[3])
    if not (roi.x0 < roi.x1 and roi.y0 < roi.y1):  # float32 rounding closed it: still bad, found earlier
        return c.good_frame(rng, region_of_interest=roi), invalid("bad_roi"), f"ROI {box} (empty in float32)"
    return c.good_frame(rng, region_of_interest=roi), invalid("bad_roi"), f"ROI {box}"


@category("options_valid", 4)
def _options_valid(c: Corpus, rng: np.random.Generator) -> Built:
    """Valid explanation options and regions of interest (half a frame or more: always a cell)."""
    kinds = [int(k) for k in rng.integers(0, 4, size=int(rng.integers(0, 4)))]
    options = {"explain": bool(rng.random() < 0.5), "heatmap_kinds": kinds,
               "explain_reference": bool(rng.random() < 0.3), "overlay": bool(rng.random() < 0.3),
               "top_k": int(rng.integers(0, 10))}
    if rng.random() < 0.5:
        x0, y0 = (float(v) for v in rng.uniform(0, 0.5, 2))
        x1, y1 = x0 + float(rng.uniform(0.5, 1 - x0)), y0 + float(rng.uniform(0.5, 1 - y0))
        options["region_of_interest"] = pb.RegionOfInterest(x0=x0, y0=y0, x1=min(x1, 1.0), y1=min(y1, 1.0))
    # Explaining on the reference's side needs the bundle's reference photos (optional in a bundle).
    expected = ((Outcome(OK), Outcome("FAILED_PRECONDITION", "no_reference_images"))
                if options["explain"] and options["explain_reference"] else OK_ONLY)
    return c.good_frame(rng, **options), expected, f"options {options}"


# -- bytes that are no valid message -----------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


_WIRE_BREAKS = ("bad_utf8_frame_id", "length_overflow", "bad_wire_type", "field_zero", "truncated_varint")


@category(MALFORMED_PROTOBUF, 3)
def _malformed_protobuf(c: Corpus, rng: np.random.Generator) -> Built:
    """Bytes that do not parse as a Frame: INVALID_ARGUMENT/malformed_message, this frame only."""
    how = _WIRE_BREAKS[int(rng.integers(len(_WIRE_BREAKS)))]
    prefix = c.good_frame(rng).SerializeToString() if rng.random() < 0.5 else b""
    if how == "bad_utf8_frame_id":
        text = bytearray(rng.bytes(int(rng.integers(1, 40))))
        text[int(rng.integers(len(text)))] = 0xFF  # never valid in UTF-8
        body = b"\x0a" + _varint(len(text)) + bytes(text)
    elif how == "length_overflow":
        n = int(rng.integers(10, 1 << 20))
        body = b"\x1a" + _varint(n) + rng.bytes(int(rng.integers(0, min(n, 4096))))
    elif how == "bad_wire_type":
        body = _varint((int(rng.integers(1, 1 << 20)) << 3) | int(rng.choice([6, 7])))
    elif how == "field_zero":
        body = bytes([int(rng.choice([0x00, 0x01, 0x02, 0x05]))]) + rng.bytes(int(rng.integers(1, 16)))
    else:  # a varint field whose varint never ends
        body = _varint((int(rng.integers(16, 1 << 20)) << 3) | 0) + b"\x80" * int(rng.integers(1, 9))
    return prefix + body, (Outcome("INVALID_ARGUMENT", "malformed_message"),), f"{how} after {len(prefix)} valid bytes"


@category("unknown_fields", 2)
def _unknown_fields(c: Corpus, rng: np.random.Generator) -> Built:
    """A valid Frame followed by fields of a newer schema: ignored, the frame is recognised."""
    extra = b""
    for _ in range(int(rng.integers(1, 5))):
        number = int(rng.integers(100, 1 << 20))
        if rng.random() < 0.5:
            extra += _varint(number << 3) + _varint(int(rng.integers(0, 2**63)))
        else:
            blob = rng.bytes(int(rng.integers(0, 200)))
            extra += _varint(number << 3 | 2) + _varint(len(blob)) + blob
    return c.good_frame(rng).SerializeToString() + extra, OK_ONLY, f"{len(extra)} bytes of unknown fields"


# -- authentication (own streams: metadata belongs to the call) ---------------------------------

_AUTH_BREAKS = ("missing", "wrong_scheme", "empty_token", "wrong_token", "short_token", "huge_token",
                "too_huge_token", "non_ascii", "admin_token", "lowercase_scheme")


@category("auth", 6, stream=OWN_STREAM)
def _auth(c: Corpus, rng: np.random.Generator) -> Built:
    """Missing, malformed, wrong and huge tokens (and two right ones sent differently)."""
    how = _AUTH_BREAKS[int(rng.integers(len(_AUTH_BREAKS)))]
    alphabet = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/", np.uint8)

    def token(n: int) -> str:
        return rng.choice(alphabet, size=n).tobytes().decode()

    unauthenticated = (Outcome("UNAUTHENTICATED"),)
    if how == "missing":
        metadata, expected = (), unauthenticated
    elif how == "wrong_scheme":
        scheme = ("Basic", "Token", "Bearer:", "JWT", "Digest")[int(rng.integers(5))]
        metadata, expected = (("authorization", f"{scheme} {c.tokens.client}"),), unauthenticated
    elif how == "empty_token":
        metadata, expected = (("authorization", "Bearer" + " " * int(rng.integers(0, 4))),), unauthenticated
    elif how == "wrong_token":
        metadata, expected = (("authorization", f"Bearer {token(int(rng.integers(16, 200)))}"),), unauthenticated
    elif how == "short_token":
        prefix = c.tokens.client[:int(rng.integers(1, 16))]
        metadata, expected = (("authorization", f"Bearer {prefix}"),), unauthenticated
    elif how == "huge_token":  # below gRPC's 8 KiB soft metadata limit: reaches muselens
        metadata, expected = (("authorization", f"Bearer {token(int(rng.integers(1000, 7000)))}"),), unauthenticated
    elif how == "too_huge_token":  # above the 16 KiB hard limit: the transport refuses it
        metadata = (("authorization", f"Bearer {token(int(rng.integers(17_000, 200_000)))}"),)
        expected = (Outcome("RESOURCE_EXHAUSTED"),)
    elif how == "non_ascii":
        text = list(token(int(rng.integers(16, 64))))
        text[int(rng.integers(len(text)))] = "éüß€日本\u00a0"[int(rng.integers(7))]
        metadata, expected = (("authorization", "Bearer " + "".join(text)),), (Outcome("INTERNAL"),)
    elif how == "admin_token":  # the admin role may recognise too
        metadata, expected = (("authorization", f"Bearer {c.tokens.admin}"),), OK_ONLY
    else:
        metadata, expected = (("authorization", f"bearer {c.tokens.client}"),), OK_ONLY
    return (metadata, c.good_frame(rng)), expected, how


# -- enrolment (admin calls; unary only) --------------------------------------------------------

_ENROL_BREAKS = ("no_id", "bad_id", "long_id", "no_photos", "too_many_photos", "no_usable_photo", "client_token")


def _bad_photo(c: Corpus, rng: np.random.Generator) -> tuple[pb.Image, str]:
    roll = rng.random()
    if roll < 0.3:
        return pb.Image(encoded=rng.bytes(int(rng.integers(1, 512)))), "unknown_format"
    if roll < 0.5:
        data = encode_jpeg(c.good_image(rng, high=96))
        return pb.Image(encoded=data[:int(rng.integers(10, len(data) - 10))]), "truncated"
    if roll < 0.7:
        return pb.Image(), "empty"
    if roll < 0.85:
        return pb.Image(raw=pb.RawImage(data=b"\0" * 10, width=64, height=64, pixel_format=pb.PIXEL_FORMAT_RGB8)), \
            "size_mismatch"
    return pb.Image(encoded=encode_jpeg(smooth_image(rng, 8, 8))), "too_small"


def _good_photo(c: Corpus, rng: np.random.Generator) -> pb.Image:
    return pb.Image(encoded=encode_jpeg(c.good_image(rng, high=160)))


@category("enroll_invalid", 3, rpc=ENROLL, stream=NO_STREAM)
def _enroll_invalid(c: Corpus, rng: np.random.Generator) -> Built:
    """Enrolments refused as a whole: bad instance ids, no/too many photos, nothing usable, client token."""
    how = _ENROL_BREAKS[int(rng.integers(len(_ENROL_BREAKS)))]
    request = pb.EnrollRequest(instance_id=f"corpus-bad-{int(rng.integers(1 << 30))}", title="bad")
    invalid_argument = (Outcome("INVALID_ARGUMENT"),)
    if how == "no_id":
        request.instance_id = " " * int(rng.integers(0, 3))
    elif how == "bad_id":
        request.instance_id = "x" + "/\\\n\r\t"[int(rng.integers(5))] + "y"
    elif how == "long_id":
        request.instance_id = "i" * int(rng.integers(201, 2000))
    elif how == "too_many_photos":
        request.photos.extend(pb.Image(encoded=b"x") for _ in range(MAX_ENROL_PHOTOS + int(rng.integers(1, 40))))
    elif how == "no_usable_photo":
        request.photos.extend(_bad_photo(c, rng)[0] for _ in range(int(rng.integers(1, 5))))
    if how not in ("no_photos", "too_many_photos", "no_usable_photo"):
        request.photos.append(_good_photo(c, rng))
    if how == "client_token":
        request.instance_id = "corpus-enrolled-0"
        return ((("authorization", f"Bearer {c.tokens.client}"),), request), (Outcome("PERMISSION_DENIED"),), how
    return request, invalid_argument, how


@category("enroll_partial", 0.5, rpc=ENROLL, stream=NO_STREAM)
def _enroll_partial(c: Corpus, rng: np.random.Generator) -> Built:
    """Enrolments with some unusable photos: accepted, each bad photo listed with its reason."""
    photos = [(_good_photo(c, rng), "")]
    for _ in range(int(rng.integers(0, 4))):
        photos.append(_bad_photo(c, rng) if rng.random() < 0.5 else (_good_photo(c, rng), ""))
    photos = [photos[k] for k in rng.permutation(len(photos))]
    request = pb.EnrollRequest(instance_id=f"corpus-enrolled-{int(rng.integers(5))}", title="Enrolled by the corpus",
                               photos=[photo for photo, _ in photos])
    listed = ",".join(reason for _, reason in photos if reason)
    return request, (Outcome(OK, listed),), f"{len(photos)} photos, rejected [{listed}]"


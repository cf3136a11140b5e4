"""Image bytes for the bad-input corpus: photo-like pictures, hand-built PNG (any colour type,
decompression bombs), JPEG through PIL (CMYK, progressive), and surgery on encoded files."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np

from muselens.runtime.frames import sniff



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


def pil_jpeg(image: np.ndarray, **save) -> bytes:
    from PIL import Image

    mode = save.pop("mode", "RGB")
    picture = Image.fromarray(image)
    if mode != picture.mode:
        picture = picture.convert(mode)
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", **save)
    return buf.getvalue()


def sof_offset(jpeg: bytes) -> int:
    """Offset of the SOFn marker (its 0xFF) of a JPEG muselens can read."""
    header = sniff(jpeg)
    return header.header_end - (8 + 3 * header.channels) - 2


def png_chunks(png: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset of the chunk's length field, data length) of every chunk."""
    chunks, pos = [], 8
    while pos + 8 <= len(png):
        length, kind = struct.unpack_from(">I4s", png, pos)
        chunks.append((kind, pos, length))
        pos += 12 + length
    return chunks


def flip_bits(data: bytes, start: int, stop: int, rng: np.random.Generator, flips: int) -> bytes:
    out = bytearray(data)
    for _ in range(flips):
        k = int(rng.integers(start, stop))
        out[k] ^= 1 << int(rng.integers(8))
    return bytes(out)

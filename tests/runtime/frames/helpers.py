"""Building test frames byte by byte: PNG chunks with real CRCs, JPEGs with patched headers."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def ihdr(width: int, height: int, depth: int = 8, colour: int = 2, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def png_bomb(side: int = 30000) -> bytes:
    """A complete, valid 1-bit grey PNG of ``side`` x ``side`` zeros: ~100 KB that decodes to side^2 bytes."""
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return PNG_SIGNATURE + ihdr(side, side, depth=1, colour=0) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def random_image(seed: int, height: int = 48, width: int = 64, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def smooth_image(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    """An RGB image that survives JPEG well: random colours upsampled to 8x8 blocks."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=((height + 7) // 8, (width + 7) // 8, 3), dtype=np.uint8)
    return np.kron(small, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]


def encode(image: np.ndarray, ext: str, params: tuple[int, ...] = ()) -> bytes:
    """Encode with OpenCV (which expects BGR for colour images)."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(ext, image, list(params))
    if not ok:
        raise RuntimeError(f"could not encode a {ext} test image")
    return buf.tobytes()


def sof_offset(jpeg: bytes) -> int:
    """Offset of the first SOF0/SOF2 marker of an OpenCV-written JPEG."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        found = jpeg.find(marker)
        if found >= 0:
            return found
    raise ValueError("no SOF0/SOF2 marker")


def patch_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header claiming ``width`` x ``height``."""
    data = bytearray(jpeg)
    struct.pack_into(">HH", data, sof_offset(jpeg) + 5, height, width)
    return bytes(data)


def scan_bomb(copies: int, width: int = 512, height: int = 256) -> bytes:
    """A progressive JPEG with its smallest scan repeated ``copies`` more times: each scan is a
    few bytes, but the decoder walks the whole image's coefficients for every one of them."""
    jpeg = encode(smooth_image(0, height, width), ".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1))
    starts = [i for i in range(len(jpeg) - 1) if jpeg[i:i + 2] == b"\xff\xda"]
    ends = starts[1:] + [jpeg.rindex(b"\xff\xd9")]
    start, end = min(zip(starts, ends), key=lambda se: se[1] - se[0])
    eoi = jpeg.rindex(b"\xff\xd9")
    return jpeg[:eoi] + jpeg[start:end] * copies + jpeg[eoi:]

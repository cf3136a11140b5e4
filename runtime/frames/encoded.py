"""Encoded camera frames (JPEG, PNG) to RGB uint8 ``(H, W, 3)``, refusing bombs before decoding.

Decoding itself is :func:`muselens.core.data.images.decode_image`, the one way muselens reads
images (grey to RGB, alpha dropped, 16-bit to 8-bit, EXIF orientation ignored), so a frame is
seen exactly as training saw its images. This module adds what a server facing untrusted
clients needs around it: size limits from the header, and a :class:`FrameError` for every
failure. Clients must send frames upright: EXIF orientation is not applied.

A server that only needs the frame at its recognition size can say so (``at_least``): a JPEG is
then decoded straight from its DCT coefficients at a smaller scale, n/8 of its size (libjpeg-turbo
through simplejpeg), to the smallest size that still holds what the server needs. A 1280x720
frame for short side 448 becomes 800x450 in the decoder instead of a full decode and an area
resize of 1280x720 (OpenCV's and Pillow's reduced modes offer only 1/2, 1/4 and 1/8, which
cannot reach 448 from 720). Anything the fast path does not accept (a corrupt or CMYK JPEG, a
warning in strict mode) is decoded the usual way, so every error stays as it was.
"""

from __future__ import annotations


import cv2
import numpy as np
import simplejpeg

from muselens.core.data.images import ImageReadError, decode_image
from muselens.core import checks
from muselens.runtime.frames.frame_error import FrameError
from muselens.runtime.frames.limits import FrameLimits, SizeNeed
from muselens.runtime.frames.sniff import JPEG, ImageHeader, sniff

DEFAULT_LIMITS = FrameLimits()
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = b"\xff\xda"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _looks_truncated(data: bytes, header: ImageHeader) -> bool:
    """Whether a frame that failed to decode also lacks its end (JPEG EOI, PNG IEND chunk).

    Entropy-coded JPEG data escapes 0xFF as FF00, so FF D9 after the header is a real EOI.
    The PNG IEND chunk is always the same 12 bytes (empty, fixed CRC).
    """
    end = _JPEG_EOI if header.format == JPEG else _PNG_IEND
    return end not in data[header.header_end:]


def jpeg_scans(data: bytes, header: ImageHeader) -> int:
    """Start-of-scan markers after a JPEG's frame header: its scans, counted without decoding.

    Entropy-coded data escapes 0xFF as FF00, so FF DA there is always a marker; bytes inside a
    segment that merely look like one (a COM or an EXIF thumbnail) can only count more, never fewer.
    """
    return data.count(_JPEG_SOS, header.header_end)


def decode_jpeg_reduced(data: bytes, height: int, width: int, need: SizeNeed) -> np.ndarray | None:
    """The JPEG ``data`` (``height`` x ``width`` by its header) decoded at the smallest n/8 scale
    that still gives ``need(height, width)``; None where no scale below 8/8 does, or where
    libjpeg-turbo refuses it (the caller then decodes in full, as without this path)."""
    min_h, min_w = need(height, width)
    if min_h >= height and min_w >= width:
        return None
    try:
        out_h, out_w, colorspace, _ = simplejpeg.decode_jpeg_header(data, min_height=min_h, min_width=min_w)
        if (out_h, out_w) == (height, width) or colorspace not in ("YCbCr", "Gray", "RGB"):
            return None
        image = simplejpeg.decode_jpeg(data, "RGB", min_height=min_h, min_width=min_w)
    except ValueError:  # corrupt, truncated, or a recoverable warning (strict): the full path says which
        return None
    if image.shape[0] < min_h or image.shape[1] < min_w or image.shape[:2] != (out_h, out_w):
        return None
    return image


def decode_encoded(data: bytes | bytearray | memoryview, limits: FrameLimits = DEFAULT_LIMITS, *,
                   at_least: SizeNeed | None = None) -> np.ndarray:
    """Decode a JPEG or PNG frame into RGB uint8 ``(H, W, 3)``, or raise :class:`FrameError`.

    Checks, in order: empty, encoded size, format and header (:func:`sniff`), declared size
    against ``limits`` (nothing is allocated before this), a JPEG's scan count (what its decode
    costs), decoding, decoded size == header. With ``at_least`` (the frame's height and width ->
    the least the caller needs), a JPEG may come back smaller than its header says, never
    smaller than that need (:func:`decode_jpeg_reduced`).
    """
    data = checks.byte_string(data, "frame data")
    if not isinstance(limits, FrameLimits):
        raise TypeError(f"limits must be FrameLimits, got {type(limits).__name__}")
    if not data:
        raise FrameError("empty", "frame has no data")
    if len(data) > limits.max_encoded_bytes:
        raise FrameError("too_large", f"encoded frame of {len(data)} bytes exceeds the limit of "
                                      f"{limits.max_encoded_bytes} bytes")
    header = sniff(data)
    limits.check_dimensions(header.width, header.height, what=f"{header.format.upper()} frame")
    if header.format == JPEG:
        scans = jpeg_scans(data, header)
        if scans > limits.max_jpeg_scans:
            raise FrameError("too_many_scans", f"JPEG frame of {len(data)} bytes has {scans} scans, more than the "
                                               f"{limits.max_jpeg_scans} this server decodes (a camera writes 1-10)")
    if at_least is not None and header.format == JPEG:
        reduced = decode_jpeg_reduced(data, header.height, header.width, at_least)
        if reduced is not None:
            return reduced
    try:
        image = decode_image(data, source=f"{header.format.upper()} frame")
    except (ImageReadError, cv2.error) as exc:
        detail = exc.reason if isinstance(exc, ImageReadError) else f"decoder error: {exc}"
        if _looks_truncated(data, header):
            raise FrameError("truncated", f"{header.format.upper()} frame of {len(data)} bytes is cut "
                                          f"short (no end marker) and cannot be decoded") from exc
        raise FrameError("corrupt", f"{header.format.upper()} frame ({header.width}x{header.height}, "
                                    f"{header.channels} channels, {header.bit_depth}-bit) cannot be "
                                    f"decoded: {detail}") from exc
    if image.shape[:2] != (header.height, header.width):
        raise FrameError("corrupt", f"{header.format.upper()} frame decoded to {image.shape[1]}x"
                                    f"{image.shape[0]} but its header says {header.width}x{header.height}")
    return image

"""Camera frames to pixels, safely: what a client sends becomes an RGB uint8 ``(H, W, 3)`` array.

A frame is either encoded (JPEG or PNG: :func:`decode_encoded`) or raw pixels with a size and
a :class:`PixelFormat` (:func:`decode_raw`). Every bad frame, whatever its bytes, raises
:class:`FrameError` with a ``reason`` slug and the gRPC ``status`` name to answer it with;
sizes are checked against :class:`FrameLimits` before any pixel is allocated. Torch- and
grpc-free (numpy + OpenCV).
"""

from __future__ import annotations

from muselens.runtime.frames.encoded import SizeNeed, decode_encoded, decode_jpeg_reduced
from muselens.runtime.frames.frame_error import INVALID_ARGUMENT, REASONS, RESOURCE_EXHAUSTED, FrameError
from muselens.runtime.frames.limits import FrameLimits
from muselens.runtime.frames.raw import PixelFormat, decode_raw, raw_frame_size
from muselens.runtime.frames.sniff import JPEG, PNG, ImageHeader, sniff

__all__ = [
    "INVALID_ARGUMENT",
    "JPEG",
    "PNG",
    "REASONS",
    "RESOURCE_EXHAUSTED",
    "SizeNeed",
    "FrameError",
    "FrameLimits",
    "ImageHeader",
    "PixelFormat",
    "decode_encoded",
    "decode_jpeg_reduced",
    "decode_raw",
    "raw_frame_size",
    "sniff",
]

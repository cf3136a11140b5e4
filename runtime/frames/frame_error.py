"""The one exception of the frame layer, and the status each kind of bad frame earns.

A camera stream must survive a bad frame: the servicer answers it with a status and goes on.
The status strings are gRPC's code names, kept as plain text so this layer imports no grpc;
each reason (a short slug clients and logs can match on) has exactly one status, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

INVALID_ARGUMENT = "INVALID_ARGUMENT"
RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"

# reason -> status. RESOURCE_EXHAUSTED means "well formed, but more than this server accepts".
REASONS: Mapping[str, str] = MappingProxyType({
    "empty": INVALID_ARGUMENT,             # no bytes at all
    "unknown_format": INVALID_ARGUMENT,    # neither JPEG nor PNG
    "truncated": INVALID_ARGUMENT,         # the data stops before the image does
    "corrupt": INVALID_ARGUMENT,           # malformed header or undecodable data
    "too_small": INVALID_ARGUMENT,         # a side below FrameLimits.min_side
    "bad_dimensions": INVALID_ARGUMENT,    # raw frame: non-positive size, or odd size for 4:2:0
    "bad_pixel_format": INVALID_ARGUMENT,  # raw frame: not one of PixelFormat
    "size_mismatch": INVALID_ARGUMENT,     # raw frame: byte count differs from width x height x format
    "too_large": RESOURCE_EXHAUSTED,       # more bytes than FrameLimits.max_encoded_bytes / max_raw_bytes
    "too_many_pixels": RESOURCE_EXHAUSTED, # width x height above FrameLimits.max_pixels
    "side_too_long": RESOURCE_EXHAUSTED,   # a side above FrameLimits.max_side
    "too_many_scans": RESOURCE_EXHAUSTED,  # a JPEG of more scans than FrameLimits.max_jpeg_scans
})


class FrameError(ValueError):
    """A frame that cannot be turned into pixels; ``reason`` is a slug, ``status`` its gRPC code name."""

    def __init__(self, reason: str, message: str):
        if reason not in REASONS:
            raise ValueError(f"unknown frame error reason {reason!r}; known: {sorted(REASONS)}")
        super().__init__(message)
        self.reason = reason
        self.status = REASONS[reason]
        self.message = message

    def __repr__(self) -> str:
        return f"FrameError({self.reason!r}, {self.message!r})"

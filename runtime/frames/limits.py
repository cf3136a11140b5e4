"""How big a frame the service accepts, checked from the header before any pixel is allocated.

Defaults: 8 MiB of encoded data (a 24 MP JPEG at high quality is ~6-8 MiB), 24 megapixels
(a 6000x4000 photo; a 8-bit RGB copy is 72 MB), 8192 pixels a side (refuses 1 x 24M strips
whose aspect ratio no resize policy can handle), and at least 32 pixels a side.

Raw frames have no byte limit of their own by default (the pixel limits bound them); a server
sets ``max_raw_bytes`` from the largest message it receives
(:attr:`muselens.runtime.server.app.ServerConfig.frame_limits`), so every raw frame these
limits accept reaches them: a 24 MP NV21 frame (36 MB) is refused here, by muselens, not by gRPC.

A progressive JPEG is decoded scan by scan, and every scan walks the whole image's
coefficients however few bytes it holds: 5,000 empty-ish scans in 423 KB cost 0.7 s of CPU on
a 2 MP frame, 10,000 in 467 KB 13 s on a 24 MP one, all inside the byte and pixel limits. A JPEG
encoder writes 1 scan (baseline), 3 (non-interleaved) or about 10 (libjpeg's progressive
script; mozjpeg's are similar), so ``max_jpeg_scans`` (64) refuses no real camera frame and
bounds a hostile one's decode at a few times a normal frame's.

Why 32: the networks downsample by 32 (``PreprocessContract.stride``), so a 32-pixel side is
one feature cell at native resolution. The service upscales small frames to its input size,
but upscaling adds no information: below one cell of real pixels a frame cannot show an
artwork's structure, and such frames (thumbnails, 1x1 probes) are client bugs. Every real
camera frame (QQVGA 160x120 and up) passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from muselens.core import checks
from muselens.core.data.images import MAX_PIXELS
from muselens.runtime.frames.frame_error import FrameError

# What a caller needs of a frame: (height, width) of the frame -> the least (height, width) it
# uses. A JPEG or raw frame may then be decoded smaller, never smaller than that.
SizeNeed = Callable[[int, int], tuple[int, int]]


@dataclass(frozen=True)
class FrameLimits:
    """What a frame may cost; one instance per server, from its configuration."""

    max_encoded_bytes: int = 8 * 1024 * 1024
    max_pixels: int = 24_000_000
    max_side: int = 8192
    min_side: int = 32
    max_raw_bytes: int | None = None  # None: the pixel limits alone
    max_jpeg_scans: int = 64

    def __post_init__(self) -> None:
        for name in ("max_encoded_bytes", "max_pixels", "max_side", "min_side", "max_jpeg_scans"):
            checks.positive_int(getattr(self, name), f"FrameLimits.{name}")
        if self.max_raw_bytes is not None:
            checks.positive_int(self.max_raw_bytes, "FrameLimits.max_raw_bytes")
        if self.max_pixels > MAX_PIXELS:
            raise ValueError(f"FrameLimits.max_pixels ({self.max_pixels}) exceeds the {MAX_PIXELS} pixels "
                             f"the image decoder accepts (muselens.core.data.images.MAX_PIXELS)")
        if self.min_side > self.max_side:
            raise ValueError(f"FrameLimits.min_side ({self.min_side}) exceeds max_side ({self.max_side})")
        if self.min_side * self.min_side > self.max_pixels:
            raise ValueError(f"FrameLimits.max_pixels ({self.max_pixels}) is below min_side^2 "
                             f"({self.min_side}^2): no frame could pass")

    def check_dimensions(self, width: int, height: int, *, what: str = "frame") -> None:
        """Raise :class:`FrameError` unless a ``width`` x ``height`` frame is within these limits."""
        if width * height > self.max_pixels:
            raise FrameError("too_many_pixels", f"{what} of {width}x{height} = {width * height} pixels "
                                                f"exceeds the limit of {self.max_pixels}")
        if max(width, height) > self.max_side:
            raise FrameError("side_too_long", f"{what} of {width}x{height} has a side above the "
                                              f"limit of {self.max_side} pixels")
        if min(width, height) < self.min_side:
            raise FrameError("too_small", f"{what} of {width}x{height} has a side below the minimum "
                                          f"of {self.min_side} pixels")

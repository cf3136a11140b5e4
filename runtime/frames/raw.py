"""Raw camera frames (uncompressed pixels with width, height and a pixel format) to RGB uint8.

Rows are tightly packed: a row of a packed format is exactly ``width x bytes per pixel`` and
each plane of a 4:2:0 format exactly its width, so clients must strip any row padding (stride)
before sending. 4:2:0 formats need an even width and height. YUV is converted by OpenCV
(``cv2.COLOR_YUV2RGB_*``: BT.601, video range), as Android and V4L2 cameras deliver it.
"""

from __future__ import annotations

from enum import Enum

import cv2
import numpy as np

from muselens.core import checks
from muselens.runtime.frames.frame_error import FrameError
from muselens.runtime.frames.limits import FrameLimits

DEFAULT_LIMITS = FrameLimits()


class PixelFormat(Enum):
    """The raw pixel layouts the service accepts; each value is the protobuf enum's name.

    RGB8/BGR8: 3 bytes a pixel; RGBA8/BGRA8: 4 (alpha dropped); GRAY8: 1.
    4:2:0, 1.5 bytes a pixel: NV12 is the Y plane then interleaved U,V at half resolution;
    NV21 the same with V,U (Android's camera default); I420 the Y plane, then U, then V planes.
    The protobuf's ``PIXEL_FORMAT_UNSPECIFIED = 0`` deliberately has no member here.
    """

    RGB8 = "PIXEL_FORMAT_RGB8"
    BGR8 = "PIXEL_FORMAT_BGR8"
    RGBA8 = "PIXEL_FORMAT_RGBA8"
    BGRA8 = "PIXEL_FORMAT_BGRA8"
    GRAY8 = "PIXEL_FORMAT_GRAY8"
    NV12 = "PIXEL_FORMAT_NV12"
    NV21 = "PIXEL_FORMAT_NV21"
    I420 = "PIXEL_FORMAT_I420"

    @classmethod
    def parse(cls, value: PixelFormat | str) -> PixelFormat:
        """A member from itself, its name (``"NV21"``) or its protobuf name (``"PIXEL_FORMAT_NV21"``)."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise TypeError(f"pixel format must be a PixelFormat or its name, got {type(value).__name__}")
        name = value.removeprefix("PIXEL_FORMAT_")
        if name not in cls.__members__:
            raise FrameError("bad_pixel_format", f"unknown pixel format {value!r}; "
                                                 f"known: {', '.join(cls.__members__)}")
        return cls[name]

    @property
    def is_yuv420(self) -> bool:
        return self in _YUV420_TO_RGB


# Packed formats: (bytes per pixel, conversion to RGB or None for RGB itself).
_PACKED: dict[PixelFormat, tuple[int, int | None]] = {
    PixelFormat.RGB8: (3, None),
    PixelFormat.BGR8: (3, cv2.COLOR_BGR2RGB),
    PixelFormat.RGBA8: (4, cv2.COLOR_RGBA2RGB),
    PixelFormat.BGRA8: (4, cv2.COLOR_BGRA2RGB),
    PixelFormat.GRAY8: (1, cv2.COLOR_GRAY2RGB),
}
_YUV420_TO_RGB: dict[PixelFormat, int] = {
    PixelFormat.NV12: cv2.COLOR_YUV2RGB_NV12,
    PixelFormat.NV21: cv2.COLOR_YUV2RGB_NV21,
    PixelFormat.I420: cv2.COLOR_YUV2RGB_I420,
}


def raw_frame_size(width: int, height: int, pixel_format: PixelFormat | str) -> int:
    """Bytes of a tightly packed ``width`` x ``height`` frame (4:2:0 sizes assume even sides)."""
    fmt = PixelFormat.parse(pixel_format)
    if fmt.is_yuv420:
        return width * height * 3 // 2
    return width * height * _PACKED[fmt][0]


def decode_raw(
    data: bytes | bytearray | memoryview,
    width: int,
    height: int,
    pixel_format: PixelFormat | str,
    limits: FrameLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Convert a raw frame to a new RGB uint8 ``(height, width, 3)`` array, or raise :class:`FrameError`.

    Checks, in order: byte count (``limits.max_raw_bytes``), pixel format, positive size,
    ``limits``, even size for 4:2:0, and that ``data`` holds exactly the bytes the size and
    format need.
    """
    data = checks.byte_string(data, "frame data")
    width = checks.integer(width, "width")
    height = checks.integer(height, "height")
    if not isinstance(limits, FrameLimits):
        raise TypeError(f"limits must be FrameLimits, got {type(limits).__name__}")
    if limits.max_raw_bytes is not None and len(data) > limits.max_raw_bytes:
        raise FrameError("too_large", f"raw frame of {len(data)} bytes exceeds the limit of {limits.max_raw_bytes} "
                                      f"bytes; send fewer pixels, or the frame JPEG-encoded")
    fmt = PixelFormat.parse(pixel_format)
    if width < 1 or height < 1:
        raise FrameError("bad_dimensions", f"raw frame size must be positive, got {width}x{height}")
    limits.check_dimensions(width, height, what=f"{fmt.name} frame")
    if fmt.is_yuv420 and (width % 2 or height % 2):
        raise FrameError("bad_dimensions", f"{fmt.name} is 4:2:0 and needs an even width and height, "
                                           f"got {width}x{height}")
    expected = raw_frame_size(width, height, fmt)
    if len(data) != expected:
        raise FrameError("size_mismatch", f"{fmt.name} frame of {width}x{height} needs exactly {expected} "
                                          f"bytes, got {len(data)}")
    pixels = np.frombuffer(data, dtype=np.uint8)
    if fmt.is_yuv420:
        return cv2.cvtColor(pixels.reshape(height * 3 // 2, width), _YUV420_TO_RGB[fmt])
    channels, code = _PACKED[fmt]
    image = pixels.reshape(height, width, channels)
    if code is None:
        return image.copy()  # frombuffer is read-only and aliases the request
    if channels == 1:
        image = image[:, :, 0]
    return cv2.cvtColor(image, code)

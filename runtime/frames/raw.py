"""Raw camera frames (uncompressed pixels with width, height and a pixel format) to RGB uint8.

Rows are tightly packed: a row of a packed format is exactly ``width x bytes per pixel`` and
each plane of a 4:2:0 format exactly its width, so clients must strip any row padding (stride)
before sending. 4:2:0 formats need an even width and height. YUV is converted by OpenCV
(``cv2.COLOR_YUV2RGB_*``: BT.601, video range), as Android and V4L2 cameras deliver it.

A server that only needs the frame at its recognition size can say so (``at_least``, as for
JPEG): the frame then comes k times smaller (k = 8, 4 or 2, the largest that still holds the
need), each plane averaged over blocks (``cv2.INTER_AREA`` at an integer factor) before the
colour conversion. A 4096x2720 NV21 frame for short side 320 took 21 ms to convert and resize
on 2 cores, all of it on 11 million pixels; reduced (converted at 512x340), 5 ms. After the
resize its pixels are within 1.5 levels of the full path's on average (tested).
"""

from __future__ import annotations

from enum import Enum

import cv2
import numpy as np

from muselens.core import checks
from muselens.runtime.frames.frame_error import FrameError
from muselens.runtime.frames.limits import FrameLimits, SizeNeed

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


# YUV (video range, BT.601) to RGB as OpenCV's COLOR_YUV2RGB_NV12/NV21/I420 compute it, as an
# affine map of (Y, U, V, 1) for cv2.transform (which rounds and saturates to uint8).
_BT601_VIDEO_TO_RGB = np.array([[1.164, 0.0, 1.596, -1.164 * 16 - 1.596 * 128],
                                [1.164, -0.391, -0.813, -1.164 * 16 + (0.391 + 0.813) * 128],
                                [1.164, 2.018, 0.0, -1.164 * 16 - 2.018 * 128]], np.float32)


def raw_frame_size(width: int, height: int, pixel_format: PixelFormat | str) -> int:
    """Bytes of a tightly packed ``width`` x ``height`` frame (4:2:0 sizes assume even sides)."""
    fmt = PixelFormat.parse(pixel_format)
    if fmt.is_yuv420:
        return width * height * 3 // 2
    return width * height * _PACKED[fmt][0]


def reduction(height: int, width: int, need: SizeNeed | None, yuv420: bool) -> int:
    """The factor k (8, 4, 2; 1: none) a frame may be reduced by for ``need``: the largest whose
    k-times smaller frame still holds the need, with every plane divisible by k (a 4:2:0 frame's
    chroma planes are half its size)."""
    if need is None:
        return 1
    min_h, min_w = need(height, width)
    step = 2 if yuv420 else 1
    for k in (8, 4, 2):
        if height % (step * k) == 0 and width % (step * k) == 0 and height // k >= min_h and width // k >= min_w:
            return k
    return 1


def _reduced_yuv420(pixels: np.ndarray, height: int, width: int, fmt: PixelFormat, k: int) -> np.ndarray:
    """A 4:2:0 frame's luma averaged over k x k blocks and its chroma over k/2 x k/2 (both then
    ``height/k`` x ``width/k``), converted like OpenCV's 4:2:0 codes (BT.601, video range): the
    reduced frame keeps all the chroma detail the full frame had at that size."""
    luma = height * width
    h, w = height // k, width // k
    y = cv2.resize(pixels[:luma].reshape(height, width), (w, h), interpolation=cv2.INTER_AREA)
    if fmt is PixelFormat.I420:  # U then V, each a plane of its own
        quarter = luma // 4
        u, v = (pixels[start:start + quarter].reshape(height // 2, width // 2) for start in (luma, luma + quarter))
    else:  # NV12 (U, V pairs) or NV21 (V, U)
        pairs = pixels[luma:].reshape(height // 2, width // 2, 2)
        u, v = (pairs[..., 0], pairs[..., 1]) if fmt is PixelFormat.NV12 else (pairs[..., 1], pairs[..., 0])
    u, v = (cv2.resize(np.ascontiguousarray(c), (w, h), interpolation=cv2.INTER_AREA) for c in (u, v))
    return cv2.transform(cv2.merge([y, u, v]), _BT601_VIDEO_TO_RGB)


def decode_raw(
    data: bytes | bytearray | memoryview,
    width: int,
    height: int,
    pixel_format: PixelFormat | str,
    limits: FrameLimits = DEFAULT_LIMITS,
    *,
    at_least: SizeNeed | None = None,
) -> np.ndarray:
    """Convert a raw frame to a new RGB uint8 ``(height, width, 3)`` array, or raise :class:`FrameError`.

    Checks, in order: byte count (``limits.max_raw_bytes``), pixel format, positive size,
    ``limits``, even size for 4:2:0, and that ``data`` holds exactly the bytes the size and
    format need. With ``at_least`` (the frame's height and width -> the least the caller needs),
    the frame may come k times smaller (see :func:`reduction`), never smaller than that need.
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
    k = reduction(height, width, at_least, fmt.is_yuv420)
    if fmt.is_yuv420:
        if k > 1:
            return _reduced_yuv420(pixels, height, width, fmt, k)
        return cv2.cvtColor(pixels.reshape(height * 3 // 2, width), _YUV420_TO_RGB[fmt])
    channels, code = _PACKED[fmt]
    image = pixels.reshape(height, width, channels)
    if k > 1:  # a new array, so no copy is needed below either
        image = cv2.resize(image, (width // k, height // k), interpolation=cv2.INTER_AREA)
        image = image.reshape(height // k, width // k, channels)  # OpenCV drops a single channel
    if code is None:
        return image.copy() if k == 1 else image  # frombuffer is read-only and aliases the request
    if channels == 1:
        image = image[:, :, 0]
    return cv2.cvtColor(image, code)

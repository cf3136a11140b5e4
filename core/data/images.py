"""Reading images the one way every part of muselens reads them: RGB, uint8, H x W x 3; and
writing JPEG the one way (:func:`encode_jpeg`).

A file that cannot be decoded raises :class:`ImageReadError` naming the file and the reason,
so callers can report it and go on with the rest instead of crashing a long run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from muselens.core import checks

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})

# Larger images are refused before decoding: a 100-megapixel museum photo is already absurd,
# and a decompression bomb must not take the process down.
MAX_PIXELS = 100_000_000


class ImageReadError(ValueError):
    """An image file that could not be read or decoded."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def decode_image(data: bytes, *, source: Path | str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (JPEG/PNG/...) into an RGB uint8 array.

    Grayscale is expanded to three channels, alpha is dropped, 16-bit is scaled to 8-bit.
    """
    if not data:
        raise ImageReadError(source, "empty file")
    buf = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(source, "not a decodable image (corrupt, truncated or unknown format)")
    if image.size == 0 or min(image.shape[:2]) < 1:
        raise ImageReadError(source, f"image has no pixels (shape {image.shape})")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise ImageReadError(source, f"image of {image.shape[1]}x{image.shape[0]} exceeds {MAX_PIXELS} pixels")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(source, f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageReadError(source, f"unsupported number of channels: {channels}")


def encode_jpeg(image: np.ndarray, quality: int = 90, *, order: str = "RGB") -> bytes:
    """JPEG bytes of a ``uint8`` image: colour ``(H, W, 3)`` with its channels in ``order``
    (``"RGB"`` as everywhere in muselens, turned into OpenCV's BGR here; ``"BGR"`` where the
    pixels are OpenCV's already) or grey ``(H, W)``; ``quality`` in [1, 100]."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {arr.dtype}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or 0 in arr.shape:
        raise ValueError(f"image must be (H, W, 3) colour or (H, W) grey with pixels, got shape {arr.shape}")
    quality = checks.integer(quality, "quality", low=1, high=100)
    checks.one_of(order, "order", ("RGB", "BGR"))
    if arr.ndim == 3 and order == "RGB":
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".jpg", np.ascontiguousarray(arr), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {arr.shape[1]}x{arr.shape[0]} image as JPEG")
    return buffer.tobytes()


def read_image(path: Path | str) -> np.ndarray:
    """Read an image file into an RGB uint8 array, or raise :class:`ImageReadError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(path, f"cannot read file ({exc.strerror or exc})") from exc
    return decode_image(data, source=path)


T = TypeVar("T")


@dataclass
class SkippedImages:
    """The images a pass skipped, with the reason for each; reported at the end of a run."""

    errors: list[ImageReadError] = field(default_factory=list)

    def add(self, error: ImageReadError) -> None:
        log.warning("skipping unreadable image %s", error)
        self.errors.append(error)

    def __len__(self) -> int:
        return len(self.errors)

    def to_list(self) -> list[dict[str, str]]:
        return [{"path": str(e.path), "reason": e.reason} for e in self.errors]


def read_images(
    items: Iterable[T], path_of, skipped: SkippedImages
) -> Iterator[tuple[T, np.ndarray]]:
    """Yield ``(item, image)`` for each readable item; unreadable ones go to ``skipped``."""
    for item in items:
        try:
            image = read_image(path_of(item))
        except ImageReadError as error:
            skipped.add(error)
            continue
        yield item, image

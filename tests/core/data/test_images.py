from __future__ import annotations

import cv2
import numpy as np
import pytest

from muselens.core.data.images import (ImageReadError, SkippedImages, decode_image, read_image,
                                          read_images)


def _encode(image: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def test_color_png_comes_back_rgb():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's order
    rgb = decode_image(_encode(bgr))
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 2] == 255).all() and (rgb[..., 0] == 0).all()


@pytest.mark.parametrize("image", [
    np.full((6, 7), 9, np.uint8),                   # grayscale
    np.full((6, 7, 4), 9, np.uint8),                # with alpha
    np.full((6, 7, 3), 9 << 8, np.uint16),          # 16-bit
])
def test_other_layouts_become_rgb_uint8(image):
    rgb = decode_image(_encode(image))
    assert rgb.shape == (6, 7, 3) and rgb.dtype == np.uint8
    assert (rgb == 9).all()


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"definitely not an image", "not a decodable image"),
])
def test_bad_bytes_are_named(data, reason):
    with pytest.raises(ImageReadError, match=reason):
        decode_image(data, source="x.jpg")


def test_truncated_jpeg_is_an_error_not_a_crash(tmp_path):
    data = _encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), ".jpg")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:40])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.path == path


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="cannot read file"):
        read_image(tmp_path / "nope.jpg")


def test_read_images_skips_and_reports(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_encode(np.zeros((3, 3, 3), np.uint8)))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    skipped = SkippedImages()
    out = list(read_images([good, bad, good], lambda p: p, skipped))
    assert [p for p, _ in out] == [good, good]
    assert skipped.to_list() == [{"path": str(bad), "reason": skipped.errors[0].reason}]

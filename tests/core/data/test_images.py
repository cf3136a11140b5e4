from __future__ import annotations

import cv2
import numpy as np
import pytest

from muselens.core.data.images import (ImageReadError, SkippedImages, decode_image, encode_jpeg, read_image,
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


def test_jpeg_round_trips_with_rgb_order_kept():
    image = np.zeros((32, 48, 3), np.uint8)
    image[:, :16] = (255, 0, 0)
    image[:, 16:32] = (0, 255, 0)
    image[:, 32:] = (0, 0, 255)
    data = encode_jpeg(image, quality=95)
    assert isinstance(data, bytes) and data[:2] == b"\xff\xd8"
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert decoded.shape == image.shape
    for cols, channel in ((slice(2, 14), 0), (slice(18, 30), 1), (slice(34, 46), 2)):
        patch = decoded[4:-4, cols].reshape(-1, 3).mean(axis=0)
        assert patch[channel] > 200 and np.delete(patch, channel).max() < 60


def test_jpeg_quality_changes_size_and_smooth_images_survive():
    y, x = np.mgrid[0:64, 0:64]
    image = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    low, high = encode_jpeg(image, quality=10), encode_jpeg(image, quality=95)
    assert len(low) < len(high)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(high, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.abs(decoded.astype(int) - image).mean() < 2.0


def test_jpeg_accepts_non_contiguous_views():
    image = np.random.default_rng(1).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    assert encode_jpeg(image[::2, ::2]) and encode_jpeg(image[:, :, ::-1])


@pytest.mark.parametrize("quality", [0, 101, 85.0, True])
def test_jpeg_rejects_bad_quality(quality):
    with pytest.raises(ValueError, match=r"quality must (be an int in|lie in) \[1, 100\]"):
        encode_jpeg(np.zeros((4, 4, 3), np.uint8), quality=quality)


def test_jpeg_rejects_bad_image():
    with pytest.raises(ValueError, match="image must be uint8"):
        encode_jpeg(np.zeros((4, 4, 3), np.float64))


def test_jpeg_quality_is_checked_and_lower_quality_is_smaller_in_bgr_order_too():
    img = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert len(encode_jpeg(img, 60, order="BGR")) < len(encode_jpeg(img, 95, order="BGR"))
    assert encode_jpeg(img, 80)[:2] == b"\xff\xd8"
    with pytest.raises(ValueError, match="quality"):
        encode_jpeg(img, 0)


def test_jpeg_of_a_grey_image_decodes_grey():
    grey = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))
    decoded = decode_image(encode_jpeg(grey, 95))
    assert decoded.shape == (16, 32, 3) and np.abs(decoded[..., 0].astype(int) - grey).max() < 8

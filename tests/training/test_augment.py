"""Augmentation: deterministic per seed, the whole image survives rotation, axes scale independently."""

from __future__ import annotations

import math

import numpy as np
import pytest

from muselens.training.augment import (
    AugmentConfig,
    AugmentParams,
    apply_augment_params,
    augment,
    cap_aspect_with_noise,
    color_jitter,
    crop,
    hflip,
    phone_view,
    rotate_expand,
    rotated_size,
    sample_augment_params,
    sample_crop,
    scale_xy,
)


def _image(h: int = 40, w: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_same_seed_same_image_other_seed_other_image():
    image = _image()
    config = AugmentConfig()
    a = augment(image, config, np.random.default_rng(7))
    b = augment(image, config, np.random.default_rng(7))
    c = augment(image, config, np.random.default_rng(8))
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_identity_config_returns_the_image_unchanged():
    image = _image()
    out = augment(image, AugmentConfig.identity(), np.random.default_rng(0))
    np.testing.assert_array_equal(out, image)


def test_augment_does_not_modify_its_input():
    image = _image()
    before = image.copy()
    for seed in range(5):
        augment(image, AugmentConfig(crop_p=1.0), np.random.default_rng(seed))
    np.testing.assert_array_equal(image, before)


def test_ninety_degrees_is_an_exact_rot90():
    image = _image(7, 11)
    out = rotate_expand(image, 90.0, fill="black")
    np.testing.assert_array_equal(out, np.rot90(image))  # counter-clockwise


@pytest.mark.parametrize("angle", [17.0, 45.0, -63.0, 135.0, 200.0])
def test_rotation_keeps_every_corner(angle):
    # A uniformly bright image on a black fill: the bright area must survive whole.
    h, w = 40, 60
    image = np.full((h, w, 3), 200, dtype=np.uint8)
    for (y, x) in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)]:
        image[y, x] = (255, 0, 0)  # red corner markers
    out = rotate_expand(image, angle, fill="black")
    assert out.shape[:2] == rotated_size(h, w, angle)
    bright = (out.astype(int).sum(axis=2) > 300).sum()
    assert abs(bright - h * w) < 0.06 * h * w
    # The canvas is not too large either: the rotated image touches all four sides.
    lit = out.sum(axis=2) > 0
    assert lit[0].any() and lit[-1].any() and lit[:, 0].any() and lit[:, -1].any()
    # Every corner marker lands inside the canvas (some reddish pixel near each rotated corner).
    rad = math.radians(angle)
    cy, cx = (out.shape[0] - 1) / 2, (out.shape[1] - 1) / 2
    for (y, x) in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)]:
        dx, dy = x - (w - 1) / 2, y - (h - 1) / 2
        rx = cx + dx * math.cos(rad) + dy * math.sin(rad)
        ry = cy - dx * math.sin(rad) + dy * math.cos(rad)
        assert 0 <= round(ry) < out.shape[0] and 0 <= round(rx) < out.shape[1]
        patch = out[max(0, round(ry) - 1):round(ry) + 2, max(0, round(rx) - 1):round(rx) + 2].astype(int)
        assert (patch[..., 0] - patch[..., 1] > 20).any()


def test_rotation_fill_mean_uses_the_image_mean_colour():
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    image[..., 0] = 100
    image[:10, :, 1] = 50  # mean colour (100, 25, 0)
    out = rotate_expand(image, 45.0, fill="mean")
    np.testing.assert_array_equal(out[0, 0], [100, 25, 0])


def test_scale_factors_are_drawn_independently():
    config = AugmentConfig(crop_p=0.0)
    draws = [sample_augment_params(100, 100, config, np.random.default_rng(s)) for s in range(400)]
    sx = np.array([d.scale_x for d in draws])
    sy = np.array([d.scale_y for d in draws])
    assert sx.min() >= 0.75 and sx.max() <= 1.25 and sy.min() >= 0.75 and sy.max() <= 1.25
    assert abs(np.corrcoef(sx, sy)[0, 1]) < 0.15
    assert np.mean(np.abs(sx - sy) > 0.05) > 0.5


def test_scale_xy_output_shape_follows_each_axis():
    out = scale_xy(_image(40, 60), 1.25, 0.75)
    assert out.shape == (30, 75, 3) and out.dtype == np.uint8


def test_flip_probability_and_full_angle_range():
    config = AugmentConfig()
    draws = [sample_augment_params(50, 50, config, np.random.default_rng(s)) for s in range(400)]
    flips = np.mean([d.flip for d in draws])
    angles = np.array([d.angle for d in draws])
    assert 0.4 < flips < 0.6
    assert angles.min() < -150 and angles.max() > 150


def test_crop_covers_the_requested_area_fraction():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = sample_crop(90, 160, (0.3, 1.0), (0.75, 4 / 3), rng)
        assert 0 <= top and 0 <= left and top + h <= 90 and left + w <= 160
        assert 0.25 <= h * w / (90 * 160) <= 1.0


def test_crop_rejects_a_region_outside_the_image():
    with pytest.raises(ValueError, match="does not fit"):
        crop(_image(10, 10), 5, 5, 6, 2)


def test_color_jitter_neutral_factors_change_nothing_and_hue_rotates():
    image = _image()
    np.testing.assert_array_equal(color_jitter(image, 1.0, 1.0, 1.0, 0.0), image)
    red = np.zeros((4, 4, 3), dtype=np.uint8)
    red[..., 0] = 255
    shifted = color_jitter(red, 1.0, 1.0, 1.0, 1.0 / 3.0)  # a third of the circle: red -> green
    assert shifted[0, 0, 1] > 200 and shifted[0, 0, 0] < 30
    darker = color_jitter(image, 0.5, 1.0, 1.0, 0.0)
    assert darker.mean() < 0.6 * image.mean()
    grey = color_jitter(image, 1.0, 1.0, 0.0, 0.0)
    assert np.abs(grey.astype(int) - grey[..., :1].astype(int)).max() <= 1


def test_hflip_mirrors():
    image = _image(3, 5)
    np.testing.assert_array_equal(hflip(image), image[:, ::-1])


def test_apply_params_order_crop_then_rotate():
    image = _image(40, 60)
    params = AugmentParams(crop=(0, 0, 20, 30), scale_x=1.0, scale_y=1.0, brightness=1.0, contrast=1.0,
                           saturation=1.0, hue=0.0, flip=True, angle=90.0)
    out = apply_augment_params(image, params, fill="black")
    np.testing.assert_array_equal(out, np.rot90(image[:20, :30, :][:, ::-1]))


@pytest.mark.parametrize("h,w", [(10, 50), (50, 10), (10, 21), (7, 100)])
def test_aspect_cap_pads_the_short_side_with_noise(h, w):
    image = np.full((h, w, 3), 128, dtype=np.uint8)
    out = cap_aspect_with_noise(image, 2.0, np.random.default_rng(0))
    assert max(out.shape[:2]) / min(out.shape[:2]) <= 2.0
    assert max(out.shape[:2]) == max(h, w)  # the long side is untouched
    assert min(out.shape[:2]) == math.ceil(max(h, w) / 2.0)
    # The original image sits inside unchanged; the rest is noise (not a constant colour).
    axis = 0 if h < w else 1
    rows = np.where((out == 128).all(axis=(1, 2) if axis == 0 else (0, 2)))[0]
    assert len(rows) == min(h, w) and np.all(np.diff(rows) == 1)
    pad = np.delete(out, rows, axis=axis)
    assert pad.std() > 50


def test_aspect_cap_leaves_moderate_images_alone():
    image = _image(40, 80)
    assert cap_aspect_with_noise(image, 2.0, np.random.default_rng(0)) is image


@pytest.mark.parametrize("bad", [
    {"scale_range": (1.2, 0.8)}, {"flip_p": 1.5}, {"max_rotation": 200.0}, {"fill": "zeros"},
    {"crop_area": (0.0, 1.0)}, {"hue": 0.7}, {"brightness": -0.1},
])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        AugmentConfig(**bad)


def test_inputs_are_checked():
    with pytest.raises(TypeError, match="uint8"):
        augment(np.zeros((4, 4, 3), dtype=np.float32), AugmentConfig(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="H x W x 3"):
        augment(np.zeros((4, 4), dtype=np.uint8), AugmentConfig(), np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        augment(_image(), AugmentConfig(), 0)
    with pytest.raises(ValueError, match="max_aspect"):
        cap_aspect_with_noise(_image(), 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="fill"):
        rotate_expand(_image(), 10.0, fill="nope")
    with pytest.raises(ValueError, match="positive"):
        scale_xy(_image(), 0.0, 1.0)


def test_a_phone_view_is_another_photo_of_the_same_picture():
    """Stage 3's positives for an artwork photographed once: deterministic per generator state,
    different from draw to draw, and never the photo itself."""
    image = _image(48, 64)
    a = phone_view(image, AugmentConfig(), np.random.default_rng([0, 4, 1, 0]))
    b = phone_view(image, AugmentConfig(), np.random.default_rng([0, 4, 1, 0]))
    c = phone_view(image, AugmentConfig(), np.random.default_rng([0, 4, 1, 1]))
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)
    plain = phone_view(image, AugmentConfig.identity(), np.random.default_rng(3))
    assert plain.shape == image.shape and not np.array_equal(plain, image)  # viewpoint, light, sensor
    with pytest.raises(TypeError, match="numpy Generator"):
        phone_view(image, AugmentConfig(), 3)


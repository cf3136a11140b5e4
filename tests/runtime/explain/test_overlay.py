"""Upsampling, the diverging colormap and blending."""

from __future__ import annotations

import numpy as np
import pytest

from muselens.runtime.explain.overlay import (NEGATIVE_RGB, POSITIVE_RGB, ZERO_RGB, colorize, diverging_lut,
                                              heatmap_overlay, upsample)


def test_upsample_shape_dtype_and_bilinear_values():
    heat = np.array([[0.0, 1.0], [2.0, 3.0]])
    up = upsample(heat, (4, 6))
    assert up.shape == (4, 6) and up.dtype == np.float32
    # Half-pixel centres: the corners keep the corner cells, the values stay in range and
    # the mean of a bilinear 2x enlargement is the mean of the map.
    assert up[0, 0] == 0.0 and up[-1, -1] == 3.0
    assert up.min() >= 0.0 and up.max() <= 3.0
    np.testing.assert_allclose(upsample(heat, (4, 4)).mean(), heat.mean(), rtol=1e-6)
    np.testing.assert_allclose(upsample(heat, (2, 2)), heat)


def test_upsample_is_bilinear_with_half_pixel_centres():
    # Output column x samples input position (x + 0.5) / 2 - 0.5, clamped at the borders.
    np.testing.assert_allclose(upsample(np.array([[0.0, 1.0]]), (1, 4)), [[0.0, 0.25, 0.75, 1.0]], atol=1e-6)
    np.testing.assert_allclose(upsample(np.array([[0.0], [4.0]]), (4, 1))[:, 0], [0.0, 1.0, 3.0, 4.0], atol=1e-5)


def test_upsample_constant_map_stays_constant():
    np.testing.assert_allclose(upsample(np.full((3, 5), -0.25, np.float32), (17, 9)), -0.25)


@pytest.mark.parametrize(
    ("heat", "size", "match"),
    [
        (np.ones(3), (4, 4), "heat must be 2-D"),
        (np.ones((2, 2), np.int64), (4, 4), "heat must have a real floating dtype"),
        (np.array([[np.nan, 0.0]]), (4, 4), "heat contains non-finite"),
        (np.ones((2, 2)), (0, 4), "size must hold positive ints"),
        (np.ones((2, 2)), (4,), r"size must be a \(height, width\) pair"),
        (np.ones((2, 2)), (4.0, 4), "size must hold positive ints"),
    ],
)
def test_upsample_rejects(heat, size, match):
    with pytest.raises(ValueError, match=match):
        upsample(heat, size)


def test_diverging_lut_anchors_and_symmetry():
    lut = diverging_lut(255)
    assert lut.shape == (255, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) == NEGATIVE_RGB and tuple(lut[127]) == ZERO_RGB and tuple(lut[-1]) == POSITIVE_RGB
    # Equal distance from zero, equal distance from the zero colour on either side (in proportion).
    neg_step = np.abs(lut[127 - 60].astype(float) - ZERO_RGB) / np.abs(np.subtract(NEGATIVE_RGB, ZERO_RGB))
    pos_step = np.abs(lut[127 + 60].astype(float) - ZERO_RGB) / np.abs(np.subtract(POSITIVE_RGB, ZERO_RGB))
    np.testing.assert_allclose(neg_step, pos_step, atol=0.02)
    with pytest.raises(ValueError, match="odd int >= 3"):
        diverging_lut(256)


def test_colorize_is_symmetric_around_zero_and_clips_at_limit():
    heat = np.array([[-2.0, 0.0, 2.0, 5.0]])
    colours = colorize(heat, limit=2.0)
    assert colours.shape == (1, 4, 3) and colours.dtype == np.uint8
    assert tuple(colours[0, 0]) == NEGATIVE_RGB
    assert tuple(colours[0, 1]) == ZERO_RGB
    assert tuple(colours[0, 2]) == POSITIVE_RGB and tuple(colours[0, 3]) == POSITIVE_RGB
    # Default limit is the largest |value|: the strongest negative cell saturates.
    assert tuple(colorize(np.array([[-4.0, 1.0]]))[0, 0]) == NEGATIVE_RGB
    assert (colorize(np.zeros((2, 2))) == ZERO_RGB).all()


@pytest.mark.parametrize("limit", [0.0, -1.0, float("inf"), True, "1"])
def test_colorize_rejects_bad_limit(limit):
    with pytest.raises(ValueError, match=r"limit must be (finite and > 0|a number)"):
        colorize(np.ones((2, 2)), limit=limit)


def test_overlay_shape_dtype_and_the_hottest_region_is_where_the_heat_is():
    image = np.full((64, 96, 3), 128, np.uint8)
    heat = np.zeros((4, 6), np.float32)
    heat[1, 4] = 1.0  # image rows 16..32, columns 64..80
    heat[3, 0] = -0.5  # image rows 48..64, columns 0..16
    out = heatmap_overlay(image, heat, alpha=0.6)
    assert out.shape == image.shape and out.dtype == np.uint8
    redness = out[..., 0].astype(int) - out[..., 2].astype(int)
    row, col = np.unravel_index(np.argmax(redness), redness.shape)
    assert 16 <= row < 32 and 64 <= col < 80
    row, col = np.unravel_index(np.argmin(redness), redness.shape)
    assert 48 <= row < 64 and 0 <= col < 16  # the negative cell is blue, distinctly
    assert redness.max() > 0 > redness.min()


def test_overlay_alpha_zero_is_the_image_and_alpha_one_is_the_colours():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    heat = rng.normal(size=(5, 6))
    np.testing.assert_array_equal(heatmap_overlay(image, heat, alpha=0.0), image)
    np.testing.assert_array_equal(heatmap_overlay(image, heat, alpha=1.0), colorize(upsample(heat, (20, 30))))


@pytest.mark.parametrize(
    ("image", "alpha", "match"),
    [
        (np.zeros((8, 8), np.uint8), 0.5, r"image_rgb must be \(H, W, 3\)"),
        (np.zeros((8, 8, 4), np.uint8), 0.5, r"image_rgb must be \(H, W, 3\)"),
        (np.zeros((8, 8, 3), np.float32), 0.5, "image_rgb must be uint8"),
        (np.zeros((0, 8, 3), np.uint8), 0.5, "image_rgb must not be empty"),
        (np.zeros((8, 8, 3), np.uint8), 1.5, r"alpha must lie in \[0, 1\]"),
        (np.zeros((8, 8, 3), np.uint8), None, "alpha must be a number"),
    ],
)
def test_overlay_rejects(image, alpha, match):
    with pytest.raises(ValueError, match=match):
        heatmap_overlay(image, np.ones((2, 2)), alpha=alpha)


def test_an_outline_is_drawn_where_the_normalised_corners_say_and_nowhere_else():
    from muselens.runtime.explain import outline_overlay
    from muselens.runtime.explain.overlay import OUTLINE_RGB

    image = np.zeros((100, 200, 3), np.uint8)
    outline = np.array([[0.25, 0.2], [0.75, 0.2], [0.75, 0.8], [0.25, 0.8]])
    drawn = outline_overlay(image, outline, points=np.array([[0.5, 0.5]]), thickness=2)
    assert image.max() == 0  # a copy
    assert tuple(drawn[20, 100]) == OUTLINE_RGB and tuple(drawn[80, 60]) == OUTLINE_RGB  # top and bottom edges
    assert tuple(drawn[50, 100]) == OUTLINE_RGB  # the keypoint
    assert drawn[5, 5].max() == 0 and drawn[40, 80].max() == 0  # outside, and inside away from the point
    with pytest.raises(ValueError, match="outline must be 4 finite"):
        outline_overlay(image, outline[:3])

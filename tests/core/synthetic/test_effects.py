from __future__ import annotations

import cv2
import numpy as np
import pytest

from muselens.core.synthetic.camera import QUERY
from muselens.core.synthetic.effects import (
    blur,
    develop,
    gaussian_noise,
    glass,
    lighting,
    visitors,
)


def _img(h=120, w=160, value=128.0):
    return np.full((h, w, 3), value, np.float32)


def test_gaussian_noise_has_unit_variance_and_zero_mean():
    n = gaussian_noise(np.random.default_rng(0), (200, 300))
    assert n.dtype == np.float32 and n.shape == (200, 300)
    assert abs(float(n.mean())) < 0.02 and float(n.std()) == pytest.approx(1.0, abs=0.02)


def test_glass_only_brightens_inside_the_quad():
    img = _img(value=60.0)
    quad = np.array([[40, 30], [120, 30], [120, 90], [40, 90]], np.float64)
    out = glass(img, quad, np.random.default_rng(1), 1.0)
    assert (out >= img - 1e-3).all(), "reflections add light"
    np.testing.assert_allclose(out[:10], img[:10], atol=1e-3)
    assert out[35:85, 45:115].mean() > img[35:85, 45:115].mean()


def test_visitors_cover_the_bottom_and_leave_the_input_untouched():
    img = _img(value=250.0)
    out = visitors(img, np.random.default_rng(2), 2, (0.6, 0.9))
    assert (img == 250).all()
    assert out[-10:].mean() < 240, "silhouettes rise from the bottom edge"


def test_lighting_keeps_the_mean_and_blur_keeps_a_flat_image_flat():
    img = _img()
    lit = lighting(img, np.random.default_rng(3))
    assert float(lit.mean()) == pytest.approx(128, rel=0.03)
    np.testing.assert_allclose(blur(img, np.random.default_rng(4), 3.0), img, atol=1e-3)
    edge = np.zeros((64, 64, 3), np.float32)
    edge[:, 32:] = 255
    assert 0 < blur(edge, np.random.default_rng(5), 3.0)[32, 32, 0] < 255


def test_develop_makes_a_uint8_picture_that_differs_from_the_scene():
    img = cv2.cvtColor(np.tile(np.arange(160, dtype=np.uint8), (120, 1)), cv2.COLOR_GRAY2BGR)
    quad = np.array([[0, 0], [160, 0], [160, 120], [0, 120]], np.float64)
    out = develop(img, np.random.default_rng(6), QUERY, quad=quad, glass_strength=0.5, occluders=1,
                  occluder_size=(0.3, 0.5))
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.abs(out.astype(int) - img).mean() > 1

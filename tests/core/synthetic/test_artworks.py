from __future__ import annotations

import cv2
import numpy as np
import pytest

from muselens.core.synthetic.artworks import (
    KINDS,
    VARIANTS,
    Style,
    jitter_palette,
    make_palette,
    make_style,
    palette_map,
    render_artwork,
    value_noise,
)


def _style(kind: str, variant: str, seed: int = 0) -> Style:
    base = make_style(kind, 0, np.random.default_rng(seed))
    return Style(kind, 0, variant, base.palette, base.knobs)


@pytest.mark.parametrize("kind, variant", [(k, v) for k in KINDS for v in VARIANTS[k]])
def test_every_variant_draws_a_varied_image_of_the_asked_size(kind, variant):
    img = render_artwork(_style(kind, variant), np.random.default_rng(1), 200, aspect=0.75)
    assert img.dtype == np.uint8 and img.shape == (200, 150, 3)
    assert img.std() > 8, "an artwork should not be a flat colour"


def test_same_generator_same_artwork_other_generator_other_artwork():
    style = make_style("painting", 0, np.random.default_rng(0))
    a = render_artwork(style, np.random.default_rng(5), 128)
    np.testing.assert_array_equal(a, render_artwork(style, np.random.default_rng(5), 128))
    assert not np.array_equal(a, render_artwork(style, np.random.default_rng(6), 128))


def test_family_shares_its_palette():
    """Two works of one family are closer in colour than works of two families (so colour alone is weak)."""
    def hist(img):
        h = cv2.calcHist([cv2.cvtColor(img, cv2.COLOR_BGR2HSV)], [0, 1], None, [18, 4], [0, 180, 0, 256]).ravel()
        return np.sqrt(h / h.sum())

    same, other = [], []
    for seed in range(6):
        fam_a = make_style("texture", 0, np.random.default_rng(100 + seed))
        fam_b = make_style("texture", 1, np.random.default_rng(200 + seed))
        a1, a2 = (hist(render_artwork(fam_a, np.random.default_rng(s), 96, 1.0)) for s in (1, 2))
        b1 = hist(render_artwork(fam_b, np.random.default_rng(3), 96, 1.0))
        same.append(a1 @ a2)
        other.append(a1 @ b1)
    assert np.mean(same) > np.mean(other)


def test_palette_schemes_and_jitter_keep_colours_valid():
    rng = np.random.default_rng(0)
    for scheme in ("analogous", "complementary", "triadic", "earth", "muted"):
        pal = make_palette(rng, scheme, 6)
        assert pal.shape == (6, 3) and pal.dtype == np.uint8
        jittered = jitter_palette(pal, rng)
        assert jittered.shape == pal.shape
    with pytest.raises(ValueError, match="colour scheme"):
        make_palette(rng, "neon", 3)


def test_value_noise_spans_unit_range_and_palette_map_uses_the_palette_ends():
    field = value_noise(np.random.default_rng(0), 40, 60, 4)
    assert field.shape == (40, 60) and field.min() == pytest.approx(0) and field.max() == pytest.approx(1)
    pal = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    mapped = palette_map(np.array([[0.0, 1.0]], np.float32), pal)
    np.testing.assert_array_equal(mapped[0], pal)


def test_bad_arguments_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown artwork kind"):
        make_style("sculpture", 0, rng)
    style = make_style("poster", 0, rng)
    with pytest.raises(ValueError, match="long_side"):
        render_artwork(style, rng, 8)
    with pytest.raises(ValueError, match="aspect"):
        render_artwork(style, rng, 64, aspect=10.0)

from __future__ import annotations

import numpy as np
import pytest

from muselens.core.synthetic.scenes import (
    DISTRACTOR_KINDS,
    FrameStyle,
    Layer,
    Scene,
    distractor_scene,
    gallery_scene,
    render_region,
    sample_frame,
)


def _scene(layers, floor_y=1e9):
    return Scene((200, 200, 200), (50, 60, 70), floor_y, (-100.0, -100.0, 100.0, 100.0), layers)


def test_an_image_layer_at_scale_one_is_copied_exactly():
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = render_region(_scene([Layer((10, 5, 40, 25), image=img)]), (0, 0, 50, 40), 1.0)
    assert out.shape == (40, 50, 3)
    np.testing.assert_array_equal(out[5:25, 10:40], img)
    assert (out[:5] == 200).all() and (out[:, :10] == 200).all()


def test_a_partly_visible_layer_shows_the_matching_part():
    img = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = render_region(_scene([Layer((0, 0, 30, 20), image=img)]), (10, 4, 25, 14), 1.0)
    np.testing.assert_array_equal(out, img[4:14, 10:25])


def test_scaling_halves_the_pixels_and_keeps_the_mean_colour():
    img = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    out = render_region(_scene([Layer((0, 0, 40, 40), image=img)]), (0, 0, 40, 40), 0.5)
    assert out.shape == (20, 20, 3)
    np.testing.assert_allclose(out.mean((0, 1)), img.mean((0, 1)), atol=1.0)


def test_colour_layers_floor_and_translucent_shadow():
    scene = _scene([Layer((0, 0, 10, 10), (0, 0, 255)), Layer((5, 0, 10, 10), (0, 0, 0), alpha=0.5)], floor_y=30)
    out = render_region(scene, (0, 0, 20, 40), 1.0)
    assert tuple(out[2, 2]) == (0, 0, 255)
    assert tuple(out[2, 7]) == (0, 0, 127) or tuple(out[2, 7]) == (0, 0, 128)
    assert tuple(out[35, 15]) == (50, 60, 70)  # floor
    assert tuple(out[15, 15]) == (200, 200, 200)  # wall


def test_empty_region_is_refused():
    with pytest.raises(ValueError, match="empty region"):
        render_region(_scene([]), (5, 0, 5, 10), 1.0)


def test_gallery_scene_places_the_artwork_inside_its_frame_with_two_neighbours():
    art = np.full((60, 80, 3), 90, np.uint8)
    calls = []

    def neighbour(rng):
        calls.append(1)
        return np.full((30, 20, 3), 10, np.uint8)

    scene = gallery_scene(art, FrameStyle(0.05, (0, 100, 200), 0.02, True), np.random.default_rng(0), neighbour)
    assert scene.artwork == (0.0, 0.0, 80.0, 60.0) and scene.glass and len(calls) == 2
    fx0, fy0, fx1, fy1 = scene.frame
    assert fx0 < 0 and fy0 < 0 and fx1 > 80 and fy1 > 60
    bx0, by0, bx1, by1 = scene.bounds
    assert bx0 < fx0 and by0 < fy0 and bx1 > fx1 and by1 > scene.floor_y
    out = render_region(scene, scene.artwork, 1.0)
    assert (out == 90).all(), "nothing may be drawn over the artwork"


@pytest.mark.parametrize("kind", DISTRACTOR_KINDS)
def test_distractor_scenes_have_no_artwork_and_a_target_inside_their_bounds(kind):
    scene, (x0, y0, x1, y1) = distractor_scene(kind, np.random.default_rng(3), 300.0)
    assert scene.artwork is None and x1 > x0 and y1 > y0
    bx0, by0, bx1, by1 = scene.bounds
    assert bx0 <= x0 and by0 <= y0 and x1 <= bx1 and y1 <= by1


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="distractor kind"):
        distractor_scene("gift_shop", np.random.default_rng(0), 100.0)
    with pytest.raises(ValueError, match="artwork kind"):
        sample_frame("sculpture", np.random.default_rng(0))

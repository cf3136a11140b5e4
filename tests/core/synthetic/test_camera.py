from __future__ import annotations

import numpy as np
import pytest

from muselens.core.synthetic.camera import (
    QUERY,
    REFERENCE,
    grazing,
    look_at,
    output_shape,
    pick_target,
    project,
    sample_view,
    shoot,
)
from muselens.core.synthetic.scenes import Layer, Scene

TARGET = (0.0, 0.0, 400.0, 300.0)
CORNERS = np.array([[0, 0], [400, 0], [400, 300], [0, 300]], np.float64)


def _frontal(**kw):
    args = dict(tilt=0.0, azimuth=0.0, roll=0.0, hfov=50.0, fill=0.8, offset=(0.0, 0.0), cover=False)
    args.update(kw)
    return look_at(TARGET, 640, 480, **args)


def test_frontal_view_is_a_centred_scaled_copy_of_the_target():
    pts = project(_frontal(), CORNERS)
    # 400x300 into 640x480 at fill 0.8: a 512x384 rectangle in the middle
    np.testing.assert_allclose(pts, [[64, 48], [576, 48], [576, 432], [64, 432]], atol=1e-6)


def test_cover_fills_the_picture_and_offset_moves_within_the_free_room():
    pts = project(_frontal(fill=1.0, cover=True), CORNERS)
    np.testing.assert_allclose(pts, [[0, 0], [640, 0], [640, 480], [0, 480]], atol=1e-6)
    moved = project(_frontal(offset=(1.0, 0.0)), CORNERS)
    np.testing.assert_allclose(moved[:, 0], [128, 640, 640, 128], atol=1e-6)


def test_tilt_foreshortens_and_roll_rotates():
    pts = project(_frontal(tilt=35.0, azimuth=0.0), CORNERS)
    left, right = pts[3, 1] - pts[0, 1], pts[2, 1] - pts[1, 1]
    assert abs(left - right) > 20, "a camera off to one side sees the near edge taller"
    rolled = project(_frontal(roll=10.0), CORNERS)
    angle = np.degrees(np.arctan2(rolled[1, 1] - rolled[0, 1], rolled[1, 0] - rolled[0, 0]))
    assert angle == pytest.approx(-10.0, abs=1e-6)


def test_views_never_graze_the_wall():
    rng = np.random.default_rng(0)
    for _ in range(200):
        w, h = output_shape(rng, 320)
        view = sample_view(rng, QUERY)
        H = look_at(TARGET, w, h, **view, fill=float(rng.uniform(0.6, 1.0)), offset=(0.8, -0.8), cover=False)
        assert not grazing(H, w, h)


@pytest.mark.parametrize("tilt_term, expected", [(0.0005, False), (0.002, True), (0.0025, True)])
def test_grazing_flags_corners_near_or_past_the_horizon(tilt_term, expected):
    # wall -> picture with the horizon at v = 1 / tilt_term: 2000 px (mild), 500 px (the bottom
    # corners look almost along the wall), 400 px (the bottom corners look past it)
    H = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.0, tilt_term, 1.0]])
    assert grazing(H, 640, 480) is expected


def test_look_at_refuses_impossible_cameras():
    with pytest.raises(ValueError, match="tilt"):
        _frontal(tilt=85.0)
    with pytest.raises(ValueError, match="hfov"):
        _frontal(hfov=5.0)
    with pytest.raises(ValueError, match="empty target"):
        look_at((0, 0, 0, 10), 64, 64, tilt=0, azimuth=0, roll=0, hfov=50, fill=1, offset=(0, 0), cover=False)


def test_output_shape_has_the_requested_long_side():
    rng = np.random.default_rng(0)
    shapes = {output_shape(rng, 640) for _ in range(100)}
    assert all(max(s) == 640 for s in shapes)
    assert len(shapes) >= 4, "aspect ratios should vary"


def _art_scene():
    art = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    return Scene((200, 200, 200), (0, 0, 0), 1e6, (-400.0, -300.0, 800.0, 600.0),
                 [Layer(TARGET, image=art)], artwork=TARGET, frame=(-10.0, -10.0, 410.0, 310.0)), art


def test_detail_targets_cover_30_to_90_percent_of_the_work_and_stay_inside_it():
    scene, _ = _art_scene()
    rng = np.random.default_rng(1)
    for aspect in (0.5, 1.0, 16 / 9):
        for _ in range(50):
            x0, y0, x1, y1 = pick_target(scene, rng, False, aspect, 0.3)
            assert 0 <= x0 < x1 <= 400 + 1e-9 and 0 <= y0 < y1 <= 300 + 1e-9
            assert 0.3 - 1e-9 <= (x1 - x0) * (y1 - y0) / (400 * 300) <= 0.9 + 1e-9


def test_global_targets_contain_the_frame():
    scene, _ = _art_scene()
    x0, y0, x1, y1 = pick_target(scene, np.random.default_rng(2), True, 1.0, REFERENCE.min_coverage)
    assert x0 <= -10 and y0 <= -10 and x1 >= 410 and y1 >= 310


def test_pick_target_needs_an_artwork():
    scene = Scene((0, 0, 0), (0, 0, 0), 0.0, (0.0, 0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="artwork"):
        pick_target(scene, np.random.default_rng(0), True, 1.0, 0.3)


def test_a_frontal_shot_at_scale_one_reproduces_the_artwork():
    scene, art = _art_scene()
    H = look_at(TARGET, 400, 300, tilt=0, azimuth=0, roll=0, hfov=50, fill=1.0, offset=(0, 0), cover=False)
    img = shoot(scene, H, 400, 300)
    assert img.shape == (300, 400, 3)
    np.testing.assert_allclose(img[5:-5, 5:-5].astype(float), art[5:-5, 5:-5].astype(float), atol=2)

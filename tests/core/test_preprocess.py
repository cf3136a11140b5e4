"""The shared preprocessing: contract round trip, short-side sizes, normalisation, antialiasing."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muselens.core.preprocess import (
    AREA_BELOW_SCALE,
    PreprocessContract,
    prepare_short_side,
    prepare_square,
    resize_exact,
    resize_short_side,
    short_side_size,
    to_network_input,
)

LITE = PreprocessContract(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic")
IMAGENET = PreprocessContract(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ---- contract ------------------------------------------------------------------------------


def test_contract_round_trips_through_json():
    contract = PreprocessContract(
        mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), scale=1 / 255, interpolation="area",
        antialias=False, stride=16, native_size=240,
    )
    data = json.loads(json.dumps(contract.to_dict()))
    assert data["mean"] == [0.1, 0.2, 0.3]
    assert PreprocessContract.from_dict(data) == contract


def test_contract_normalises_lists_to_float_tuples():
    contract = PreprocessContract(mean=[0, 0, 1], std=[1, 1, 1])
    assert contract.mean == (0.0, 0.0, 1.0) and isinstance(contract.mean, tuple)
    assert hash(contract) == hash(PreprocessContract(mean=(0.0, 0.0, 1.0), std=(1.0, 1.0, 1.0)))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"mean": (0.5, 0.5)}, ValueError, "mean must be 3"),
        ({"std": (0.5, 0.0, 0.5)}, ValueError, "std must be positive"),
        ({"mean": (0.5, float("nan"), 0.5)}, ValueError, "finite"),
        ({"scale": 0.0}, ValueError, "scale"),
        ({"interpolation": "lanczos"}, ValueError, "interpolation"),
        ({"antialias": 1}, TypeError, "antialias"),
        ({"stride": 0}, ValueError, "stride"),
        ({"native_size": True}, ValueError, "native_size"),
        ({"channel_order": "BGR"}, ValueError, "channel_order"),
    ],
)
def test_contract_rejects_bad_fields(kwargs, error, match):
    base = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    with pytest.raises(error, match=match):
        PreprocessContract(**{**base, **kwargs})


def test_from_dict_rejects_unknown_and_missing_keys():
    data = LITE.to_dict()
    with pytest.raises(ValueError, match="unknown .* keys: \\['size'\\]"):
        PreprocessContract.from_dict({**data, "size": 3})
    del data["std"]
    with pytest.raises(ValueError, match="lacks keys: \\['std'\\]"):
        PreprocessContract.from_dict(data)
    with pytest.raises(TypeError, match="dict"):
        PreprocessContract.from_dict([1, 2])


# ---- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hw, short, max_aspect, expected",
    [
        ((400, 600), 448, None, (448, 672)),
        ((600, 400), 448, None, (672, 448)),
        ((300, 300), 224, None, (224, 224)),
        ((100, 1000), 224, None, (224, 2240)),
        ((100, 1000), 224, 2.0, (224, 448)),
        ((1000, 100), 224, 2.0, (448, 224)),
        ((400, 600), 448, 2.0, (448, 672)),  # below the cap: untouched
        ((3, 5), 1, None, (1, 2)),  # 5/3 = 1.67 rounds to 2
        ((2, 5), 2, None, (2, 5)),
        ((4, 5), 2, None, (2, 3)),  # 2.5 rounds half up
    ],
)
def test_short_side_size(hw, short, max_aspect, expected):
    assert short_side_size(*hw, short, max_aspect) == expected


@settings(max_examples=200, deadline=None)
@given(
    h=st.integers(1, 5000), w=st.integers(1, 5000), short=st.integers(1, 1024),
    max_aspect=st.one_of(st.none(), st.floats(1.0, 4.0)),
)
def test_short_side_size_properties(h, w, short, max_aspect):
    oh, ow = short_side_size(h, w, short, max_aspect)
    assert min(oh, ow) == short
    assert (oh <= ow) if h <= w else (oh >= ow)
    long_exact = max(h, w) * short / min(h, w)
    if max_aspect is None:
        assert abs(max(oh, ow) - long_exact) <= 0.5
    else:
        assert max(oh, ow) <= max(short, math.floor(short * max_aspect + 0.5))
        assert max(oh, ow) <= math.floor(long_exact + 0.5)


@pytest.mark.parametrize(
    "args, match",
    [((0, 5, 3), "height"), ((5, -1, 3), "width"), ((5, 5, 0), "short"), ((5, 5, 2.5), "short")],
)
def test_short_side_size_rejects_bad_sizes(args, match):
    with pytest.raises(ValueError, match=match):
        short_side_size(*args)


def test_short_side_size_rejects_bad_max_aspect():
    with pytest.raises(ValueError, match="max_aspect"):
        short_side_size(10, 20, 5, 0.5)
    with pytest.raises(ValueError, match="max_aspect"):
        short_side_size(10, 20, 5, float("inf"))


# ---- resizing ------------------------------------------------------------------------------


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic", "area"])
@pytest.mark.parametrize("antialias", [True, False])
def test_resize_short_side_shapes(interpolation, antialias):
    for (h, w), short in (((97, 131), 64), ((40, 30), 100), ((50, 50), 50)):
        out = resize_short_side(_image(h, w), short, interpolation=interpolation, antialias=antialias)
        assert out.dtype == np.uint8
        assert out.shape == (*short_side_size(h, w, short), 3)


def test_resize_is_identity_at_the_same_size():
    image = _image(32, 48)
    assert np.array_equal(resize_short_side(image, 32), image)
    assert np.array_equal(resize_exact(image, 32, 48), image)


def test_resize_exact_ignores_aspect():
    assert resize_exact(_image(40, 90), 224, 224).shape == (224, 224, 3)


def test_antialias_suppresses_aliasing_when_shrinking():
    """A 1-pixel checkerboard shrunk 8x must become flat grey; point sampling would not."""
    yy, xx = np.mgrid[0:256, 0:256]
    board = (((yy + xx) % 2) * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    smooth = resize_short_side(board, 32, interpolation="bilinear", antialias=True)
    aliased = resize_short_side(board, 32, interpolation="nearest", antialias=False)
    assert abs(float(smooth.mean()) - 127.5) < 1.0 and float(smooth.std()) < 1.0
    assert abs(float(aliased.mean()) - 127.5) > 100.0  # every 8th pixel: all one colour


def test_a_mild_shrink_uses_the_contract_interpolation_and_stays_close_to_area_averaging():
    """A frame decoded near the recognition size (800x450 for 448) is brought there with the
    contract's kernel, not area averaging; on a smooth photo-like image the two barely differ."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (450, 800, 3), dtype=np.uint8), (0, 0), 1.5)
    out = resize_short_side(image, 448, interpolation="bilinear", antialias=True)
    assert np.array_equal(out, cv2.resize(image, (796, 448), interpolation=cv2.INTER_LINEAR))
    area = cv2.resize(image, (796, 448), interpolation=cv2.INTER_AREA)
    assert np.abs(out.astype(int) - area).mean() < 1.0
    small = resize_short_side(image, 360, interpolation="bilinear", antialias=True)  # 0.8 < AREA_BELOW_SCALE
    assert np.array_equal(small, cv2.resize(image, (640, 360), interpolation=cv2.INTER_AREA))
    assert 360 / 450 < AREA_BELOW_SCALE <= 448 / 450 and 320 / 360 >= AREA_BELOW_SCALE


def test_upscaling_uses_the_contract_interpolation():
    image = _image(8, 8)
    nearest = resize_short_side(image, 32, interpolation="nearest", antialias=True)
    assert np.array_equal(nearest, image.repeat(4, axis=0).repeat(4, axis=1))


@pytest.mark.parametrize(
    "image, error",
    [
        (np.zeros((4, 4, 3), dtype=np.float32), TypeError),
        (np.zeros((4, 4), dtype=np.uint8), ValueError),
        (np.zeros((4, 4, 4), dtype=np.uint8), ValueError),
        (np.zeros((0, 4, 3), dtype=np.uint8), ValueError),
        ([[1, 2, 3]], TypeError),
    ],
)
def test_bad_images_are_rejected(image, error):
    with pytest.raises(error):
        resize_short_side(image, 8)
    with pytest.raises(error):
        to_network_input(image, LITE)


def test_unknown_interpolation_is_rejected():
    with pytest.raises(ValueError, match="interpolation"):
        resize_short_side(_image(8, 8), 4, interpolation="lanczos")


# ---- normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize("contract", [LITE, IMAGENET])
def test_to_network_input_matches_the_formula(contract):
    image = _image(5, 7, seed=3)
    x = to_network_input(image, contract)
    assert x.shape == (1, 3, 5, 7) and x.dtype == np.float32 and x.flags.c_contiguous
    for c in range(3):
        for i in range(5):
            for j in range(7):
                expected = (image[i, j, c] / 255.0 - contract.mean[c]) / contract.std[c]
                assert x[0, c, i, j] == pytest.approx(expected, abs=1e-5)


def test_lite_contract_maps_pixels_to_minus_one_plus_one():
    image = np.zeros((1, 2, 3), dtype=np.uint8)
    image[0, 1] = 255
    x = to_network_input(image, LITE)
    assert np.allclose(x[0, :, 0, 0], -1.0) and np.allclose(x[0, :, 0, 1], 1.0)


def test_channel_order_is_kept_rgb():
    red = np.zeros((2, 2, 3), dtype=np.uint8)
    red[..., 0] = 255
    x = to_network_input(red, LITE)
    assert np.allclose(x[0, 0], 1.0) and np.allclose(x[0, 1:], -1.0)


def test_to_network_input_needs_a_contract():
    with pytest.raises(TypeError, match="PreprocessContract"):
        to_network_input(_image(4, 4), {"mean": (0, 0, 0)})


def test_prepare_combines_resize_and_normalise():
    image = _image(60, 90, seed=1)
    x = prepare_short_side(image, LITE, 32, max_aspect=1.25)
    assert x.shape == (1, 3, 32, 40)
    expected = to_network_input(
        resize_short_side(image, 32, 1.25, interpolation=LITE.interpolation, antialias=LITE.antialias), LITE
    )
    assert np.array_equal(x, expected)
    assert prepare_square(image, IMAGENET, 24).shape == (1, 3, 24, 24)

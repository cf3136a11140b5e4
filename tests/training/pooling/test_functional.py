"""Poolings against brute-force loops over numpy arrays, and the R-MAC grid against hand-made lists."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from muselens.training.pooling.functional import gem, mac, rmac, rmac_regions, spoc

SHAPES = [(2, 3, 1, 1), (2, 4, 5, 7), (1, 3, 6, 6), (3, 2, 9, 4), (1, 5, 1, 6), (2, 3, 2, 2)]


def _map(shape: tuple[int, ...], seed: int = 0, positive: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    return x.abs() if positive else x


def _brute(x: torch.Tensor, reduce) -> np.ndarray:
    a = x.numpy()
    n, c, h, w = a.shape
    out = np.zeros((n, c))
    for i in range(n):
        for k in range(c):
            out[i, k] = reduce([a[i, k, y, z] for y in range(h) for z in range(w)])
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_mac_is_the_channel_maximum(shape):
    x = _map(shape)
    assert mac(x).shape == shape[:2]
    np.testing.assert_allclose(mac(x).numpy(), _brute(x, max), rtol=0, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_spoc_is_the_channel_mean(shape):
    x = _map(shape)
    np.testing.assert_allclose(spoc(x).numpy(), _brute(x, lambda v: sum(v) / len(v)), atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [1.0, 3.0, 4.5])
def test_gem_is_the_clamped_power_mean(shape, p):
    x = _map(shape)  # negative values are clamped to eps
    eps = 1e-6
    expected = _brute(x, lambda v: (sum(max(t, eps) ** p for t in v) / len(v)) ** (1 / p))
    np.testing.assert_allclose(gem(x, p=p, eps=eps).numpy(), expected, rtol=1e-10)


def test_gem_interpolates_between_spoc_and_mac():
    x = _map((2, 4, 5, 7), positive=True)
    torch.testing.assert_close(gem(x, p=1.0), spoc(x))
    assert torch.all(gem(x, p=1.0) <= gem(x, p=3.0)) and torch.all(gem(x, p=3.0) <= mac(x))
    torch.testing.assert_close(gem(x, p=200.0), mac(x), rtol=0.02, atol=0)


def test_gem_accepts_a_tensor_p_and_passes_gradients():
    x = _map((1, 3, 4, 5), positive=True).requires_grad_(True)
    p = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: gem(a, b), (x, p))


@pytest.mark.parametrize("bad_p", [0.0, -1.0, float("inf"), torch.tensor([1.0, 2.0])])
def test_gem_rejects_bad_p(bad_p):
    with pytest.raises(ValueError, match="p must"):
        gem(_map((1, 2, 3, 3)), p=bad_p)


@pytest.mark.parametrize("fn", [mac, spoc, gem, rmac])
def test_poolings_reject_bad_maps(fn):
    with pytest.raises(ValueError, match="N, C, H, W"):
        fn(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="empty"):
        fn(torch.zeros(1, 3, 0, 4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn(np.zeros((1, 3, 4, 4)))


# ---- R-MAC ---------------------------------------------------------------------------------

# Worked by hand from the Tolias grid (overlap 0.4, extra long-side regions chosen among 1..6).
# 7x7: square, no extra regions. Level 1: side 7; level 2: side 4, starts 0,3; level 3: side 3, starts 0,2,4.
GRID_7x7 = [(0, 0, 7)] + [(t, l, 4) for t in (0, 3) for l in (0, 3)] + [(t, l, 3) for t in (0, 2, 4) for l in (0, 2, 4)]
# 5x8 (H x W): w=5; overlap errors |1 - 3/(s-1)/5 - 0.4| are 0, 0.3, ... -> 1 extra region on W.
# Level 1: side 5, W starts 0,3; level 2: side 3, H starts 0,2, W starts 0,2,5 (step 2.5);
# level 3: side 2, H starts 0,1,3 (step 1.5), W starts 0,2,4,6.
GRID_5x8 = (
    [(0, l, 5) for l in (0, 3)]
    + [(t, l, 3) for t in (0, 2) for l in (0, 2, 5)]
    + [(t, l, 2) for t in (0, 1, 3) for l in (0, 2, 4, 6)]
)
# 2x2: level 1 side 2; levels 2 and 3 side 1, level 3 repeats the first row/column (step 0.5).
GRID_2x2 = [(0, 0, 2)] + [(t, l, 1) for t in (0, 1) for l in (0, 1)] + [(t, l, 1) for t in (0, 0, 1) for l in (0, 0, 1)]


@pytest.mark.parametrize(
    "hw, expected",
    [
        ((7, 7), GRID_7x7),
        ((5, 8), GRID_5x8),
        ((8, 5), [(l, t, s) for (t, l, s) in GRID_5x8]),
        ((2, 2), GRID_2x2),
        ((1, 1), [(0, 0, 1)]),  # sides 0 at levels 2 and 3 are left out
    ],
)
def test_rmac_regions_match_hand_worked_grids(hw, expected):
    assert sorted(rmac_regions(*hw, levels=3)) == sorted(expected)


def test_rmac_regions_choose_more_long_side_regions_for_elongated_maps():
    # 3 x 12: w=3, errors |1 - 9/(s-1)/3 - 0.4| for s=2..7 are 2.4, .9, .4, .15, 0, .1 -> 5 extra
    # regions on W at level 1, step (12 - 3) / 5 = 1.8.
    level1 = rmac_regions(3, 12, levels=1)
    assert all(t == 0 and s == 3 for (t, _, s) in level1)
    assert [l for (_, l, _) in level1] == [0, 1, 3, 5, 7, 9]


@pytest.mark.parametrize("h, w", [(1, 1), (1, 9), (4, 4), (5, 8), (8, 5), (11, 17), (30, 14)])
@pytest.mark.parametrize("levels", [1, 3, 4])
def test_rmac_regions_stay_inside_the_map(h, w, levels):
    regions = rmac_regions(h, w, levels)
    assert regions
    for top, left, side in regions:
        assert side >= 1 and 0 <= top and top + side <= h and 0 <= left and left + side <= w


def test_rmac_regions_reject_bad_sizes():
    with pytest.raises(ValueError, match="levels"):
        rmac_regions(4, 4, 0)
    with pytest.raises(ValueError, match="height"):
        rmac_regions(0, 4)


def _rmac_brute(x: torch.Tensor, regions: list[tuple[int, int, int]], eps: float = 1e-6) -> np.ndarray:
    a = x.numpy()
    n, c, h, w = a.shape
    out = np.zeros((n, c))
    for i in range(n):
        for top, left, side in [(0, 0, None)] + regions:
            if side is None:
                v = np.array([max(a[i, k, y, z] for y in range(h) for z in range(w)) for k in range(c)])
            else:
                v = np.array([
                    max(a[i, k, y, z] for y in range(top, top + side) for z in range(left, left + side))
                    for k in range(c)
                ])
            out[i] += v / (math.sqrt(sum(t * t for t in v)) + eps)
    return out


@pytest.mark.parametrize("hw, regions", [((7, 7), GRID_7x7), ((5, 8), GRID_5x8), ((2, 2), GRID_2x2), ((1, 1), [(0, 0, 1)])])
def test_rmac_sums_normalised_region_maxima(hw, regions):
    x = _map((2, 4, *hw), seed=5, positive=True)
    np.testing.assert_allclose(rmac(x).numpy(), _rmac_brute(x, regions), rtol=1e-10)


def test_rmac_of_a_1x1_map_is_twice_the_normalised_vector():
    x = _map((3, 6, 1, 1), positive=True)
    v = x[:, :, 0, 0]
    torch.testing.assert_close(rmac(x, eps=0.0 + 1e-30), 2 * v / v.norm(dim=1, keepdim=True))


def test_rmac_rejects_bad_eps():
    with pytest.raises(ValueError, match="eps"):
        rmac(_map((1, 2, 3, 3)), eps=0.0)

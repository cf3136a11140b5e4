from __future__ import annotations

import math

import pytest

from muselens.runtime.streams.smoother_config import FLOOR_GAP, SmootherConfig, ema_alpha


def test_defaults_are_valid():
    config = SmootherConfig()
    assert config.min_frames == 3 and config.half_life_s is None
    assert 0 < ema_alpha(config.half_life_frames, 1.0) < 1


def test_ints_become_floats():
    config = SmootherConfig(half_life_frames=2, floor=-1, half_life_s=1)
    assert isinstance(config.half_life_frames, float) and isinstance(config.floor, float)
    assert isinstance(config.half_life_s, float)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"half_life_frames": 0}, ValueError, "half_life_frames must be finite and > 0"),
    ({"half_life_frames": math.nan}, ValueError, "half_life_frames must be finite"),
    ({"half_life_s": -1.0}, ValueError, "half_life_s must be finite and > 0"),
    ({"half_life_s": "0.1"}, TypeError, "half_life_s must be a number"),
    ({"min_frames": 0}, ValueError, "min_frames must be >= 1"),
    ({"min_frames": 2.0}, TypeError, "min_frames must be an int"),
    ({"max_tracked": True}, TypeError, "max_tracked must be an int"),
    ({"enter_margin": -0.01}, ValueError, "enter_margin must be finite and >= 0"),
    ({"switch_margin": math.inf}, ValueError, "switch_margin must be finite"),
    ({"exit_margin": None}, TypeError, "exit_margin must be a number"),
    ({"floor": -math.inf}, ValueError, "floor must be finite"),
    ({"uncertain_weight": 1.5}, ValueError, r"uncertain_weight must be in \[0, 1\]"),
    ({"uncertain_weight": -0.5}, ValueError, "uncertain_weight must be finite and >= 0"),
])
def test_invalid(kwargs, error, match):
    with pytest.raises(error, match=match):
        SmootherConfig(**kwargs)


def test_ema_alpha_is_a_half_life():
    assert ema_alpha(2.0, 2.0) == pytest.approx(0.5)
    assert ema_alpha(0.1, 0.3) == pytest.approx(1 - 0.125)
    assert ema_alpha(1.0, 0.0) == 0.0
    # Two steps of dt weigh the old average like one step of 2 dt: frame-rate independent.
    one = 1 - ema_alpha(0.2, 0.066)
    assert (1 - ema_alpha(0.2, 0.033)) ** 2 == pytest.approx(one)


@pytest.mark.parametrize(("half_life", "elapsed", "match"), [
    (0.0, 1.0, "half_life must be > 0"),
    (1.0, -0.1, "elapsed must be >= 0"),
    (1.0, math.nan, "elapsed must be >= 0"),
])
def test_ema_alpha_invalid(half_life, elapsed, match):
    with pytest.raises(ValueError, match=match):
        ema_alpha(half_life, elapsed)


# -- the configuration a bundle's threshold gets (issue 18: -1.0 made every stream fail) ---------------

THRESHOLDS = [-1.0, -0.999, -0.5, -0.1, 0.0, 0.02, 0.05, 0.1, 0.119, 0.12, 0.3, 0.5, 0.9, 0.97, 1.0]


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("configured", [SmootherConfig(), SmootherConfig(floor=0.4, exit_margin=0.1, min_frames=1)])
def test_every_threshold_gets_a_working_smoother(threshold, configured):
    """Valid for any threshold in [-1, 1], and not merely valid: an artwork seen clearly is shown and,
    once gone, dropped within a few frames (a floor just under the exit level would take forever)."""
    from muselens.runtime.streams.smoother import StreamSmoother

    config = configured.for_threshold(threshold)
    smoother = StreamSmoother(threshold, config)  # raised ValueError for -1.0 before
    assert config.floor <= configured.floor and config.floor <= threshold - config.exit_margin - FLOOR_GAP
    assert {k: v for k, v in vars(config).items() if k != "floor"} == \
        {k: v for k, v in vars(configured).items() if k != "floor"}
    if threshold + config.enter_margin >= 0.99:
        return  # no score can clear it: nothing is ever shown
    shown = [smoother.update([("a", 1.0)], "artwork").instance_id for _ in range(40)]
    assert shown[-1] == "a"
    gone = [smoother.update([], "no_artwork").instance_id for _ in range(15)]
    assert gone[-1] is None and gone.index(None) < 12, gone


def test_a_floor_far_enough_below_the_threshold_is_kept():
    assert SmootherConfig().for_threshold(0.5) == SmootherConfig()
    assert SmootherConfig(floor=-0.3).for_threshold(0.1).floor == -0.3
    assert SmootherConfig().for_threshold(0.1).floor == pytest.approx(0.1 - 0.02 - FLOOR_GAP)
    assert SmootherConfig().for_threshold(-1.0).floor == pytest.approx(-1.0 - 0.02 - FLOOR_GAP)


@pytest.mark.parametrize(("threshold", "error", "match"), [
    (math.nan, ValueError, "threshold must be finite"),
    ("0.5", TypeError, "threshold must be a number"),
    (True, TypeError, "threshold must be a number"),
])
def test_for_threshold_refuses_a_bad_threshold(threshold, error, match):
    with pytest.raises(error, match=match):
        SmootherConfig().for_threshold(threshold)

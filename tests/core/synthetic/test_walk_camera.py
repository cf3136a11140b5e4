"""The walk's camera path: it moves between stops and holds still at them; its waypoints are checked."""

from __future__ import annotations

import numpy as np
import pytest

from muselens.core.synthetic.walk_camera import CameraPath, Waypoint


def test_camera_path_walks_between_stops_and_holds_still_at_them():
    rng = np.random.default_rng(0)
    wps = [Waypoint(0.0, 0.0, 100.0, 0.0, (0.0, 0.0), None),
           Waypoint(200.0, 2.0, 50.0, 10.0, (3.0, 0.0), 0),
           Waypoint(400.0, 0.0, 100.0, 0.0, (0.0, 0.0), None)]
    path = CameraPath(wps, speed=50.0, walking=wps[0], rng=rng)
    start, hold_end, _ = path.events[1]
    assert hold_end - start == pytest.approx(2.0)
    mid = path.at((start + hold_end) / 2)
    assert mid.paused == 0 and mid.speed == 0.0
    assert mid.window == pytest.approx(50.0)  # stepped closer: the stop's window
    assert abs(mid.x - 200.0) < 0.02 * 50.0  # only the hand's tremor moves it
    cruise = path.at(start / 2)
    assert cruise.speed == pytest.approx(50.0) and cruise.paused is None
    assert cruise.window == pytest.approx(100.0)
    xs = [path.at(t).x for t in np.linspace(0, path.duration, 200)]
    assert xs[-1] == pytest.approx(400.0, abs=2.0) and xs[0] == pytest.approx(0.0, abs=2.0)
    assert path.duration == pytest.approx(2.0 + 2 * (200.0 / 50.0 + 50.0 / path.accel))


def test_camera_path_refuses_waypoints_out_of_order():
    wp = Waypoint(0.0, 0.0, 100.0, 0.0, (0.0, 0.0), None)
    with pytest.raises(ValueError, match="left to right"):
        CameraPath([wp, Waypoint(-5.0, 0.0, 100.0, 0.0, (0.0, 0.0), None)], 50.0, wp, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least two"):
        CameraPath([wp], 50.0, wp, np.random.default_rng(0))

"""The plan of a visitor's walk: the wall it passes, the artworks it stops at and the camera's path
through the time it is given (:func:`plan_walk`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from muselens.core.synthetic import seeding
from muselens.core.synthetic.gallery_wall import Wall, build_wall
from muselens.core.synthetic.museum import InstancePlan
from muselens.core.synthetic.scenes import FrameStyle
from muselens.core.synthetic.walk_camera import ACCEL_S, CameraPath, Waypoint, move_time, tilt_vector

_WALK_WINDOW = 1.6  # short side of the view while walking, in wall units u
_MIN_STOP_WINDOW = 0.5  # the visitor steps no closer than this
_WALK_AIM_Y = 0.12  # the phone is held a little below eye level while walking
_MAX_SPEED = 1.7  # u per second: a brisk walk, for a walk short on time
_MIN_PAUSE_S = 1.0


@dataclass(frozen=True, eq=False)
class WalkPlan:
    wall: Wall
    path: CameraPath
    paused: tuple[int, ...]  # wall indices of the artworks the visitor stops at


class _TooShort(ValueError):
    def __init__(self, needed: float) -> None:
        super().__init__(f"needs {needed:.1f} s")
        self.needed = needed


def plan_walk(works: Sequence[tuple[InstancePlan, np.ndarray, FrameStyle]], u: float, seed: int, seconds: float,
              out_size: tuple[int, int], min_pause: float = _MIN_PAUSE_S, hurry: bool = True) -> WalkPlan:
    """Hang ``works``, choose where to stop and fill ``seconds`` with the walk.

    The visitor walks at a seeded pace; with ``hurry`` one short on time walks faster, up to a
    brisk pace. Raises ``_TooShort`` (a ValueError) when the walk still does not fit.
    """
    rng = seeding.rng_for(seed, seeding.WALK, seeding.WALK_LAYOUT, len(works))
    wall = build_wall(works, u, rng)
    out_w, out_h = out_size
    aspect = out_w / out_h
    walk_window = _WALK_WINDOW * u / min(1.0, aspect)
    n = len(wall.artworks)
    stop = rng.random(n) < 0.55
    if not stop.any():
        stop[int(rng.integers(n))] = True
    paused = tuple(int(i) for i in np.flatnonzero(stop))
    weights = rng.uniform(0.6, 1.4, len(paused))
    walk_tilt = tilt_vector(float(rng.uniform(6, 12)), 180.0)  # looking a little ahead, along the wall
    start = Waypoint(0.2 * u, 0.0, walk_window, _WALK_AIM_Y * u, walk_tilt, None)
    stops = []
    for i in paused:
        art = wall.artworks[i]
        fx0, fy0, fx1, fy1 = art.frame
        fill = rng.uniform(0.78, 0.9)
        window = max(_MIN_STOP_WINDOW * u, max(fy1 - fy0, (fx1 - fx0) / aspect) / fill)
        aim_y = (fy0 + fy1) / 2 + window * rng.uniform(-0.04, 0.04)
        x = (fx0 + fx1) / 2 + window * aspect * rng.uniform(-0.04, 0.04)
        tilt = tilt_vector(float(9 * math.sqrt(rng.uniform(0, 1))), float(rng.uniform(0, 360)))
        stops.append(Waypoint(x, 0.0, window, aim_y, tilt, i))
    end = Waypoint(wall.length - 0.2 * u, 0.0, walk_window, start.aim_y, walk_tilt, None)
    waypoints = [start, *stops, end]
    speed = u * float(rng.uniform(0.9, 1.15))

    def needed_at(v: float) -> float:
        moving = sum(move_time(b.x - a.x, v, v / ACCEL_S) for a, b in zip(waypoints, waypoints[1:], strict=False))
        return moving + min_pause * len(paused)

    needed = needed_at(speed)
    while hurry and needed > seconds and speed < _MAX_SPEED * u:  # short on time: walk faster
        speed = min(_MAX_SPEED * u, speed * 1.05)
        needed = needed_at(speed)
    if needed > seconds:
        raise _TooShort(needed)
    pauses = min_pause + (seconds - needed) * weights / weights.sum()
    waypoints[1:-1] = [Waypoint(wp.x, float(p), wp.window, wp.aim_y, wp.tilt, wp.artwork)
                       for wp, p in zip(stops, pauses, strict=True)]
    path = CameraPath(waypoints, speed, start, seeding.rng_for(seed, seeding.WALK, seeding.WALK_CAMERA))
    return WalkPlan(wall, path, paused)



"""The handheld camera of a visitor's walk: where it points at every instant, and its homography.

A :class:`CameraPath` goes from waypoint to waypoint along the wall at walking speed (accelerating
and braking), holds at the artworks the visitor stops at, and adds a footstep bob, a wobble and
a slow roll; :func:`homography` maps the wall to the picture for a :class:`CameraState`
(:func:`~muselens.core.synthetic.camera.look_at`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from muselens.core.synthetic.camera import look_at

_HFOV = 60.0
ACCEL_S = 0.8  # seconds from standing to walking speed
STEP_HZ = 1.8  # footsteps per second: the camera's bob


@dataclass(frozen=True)
class Waypoint:
    """A point of the walk: the view's centre, its height in wall units, the camera's tilt, the time spent."""

    x: float
    hold: float  # seconds spent here
    window: float
    aim_y: float
    tilt: tuple[float, float]  # tilt in degrees times (cos, sin) of its azimuth: interpolates smoothly
    artwork: int | None  # index on the wall, or None for the walk's start and end


@dataclass(frozen=True)
class CameraState:
    x: float
    y: float
    speed: float  # wall units per second
    window: float  # picture height in wall units
    tilt: float
    azimuth: float
    roll: float
    paused: int | None  # the artwork the camera stands still in front of


def _move(distance: float, speed: float, accel: float, tau: float) -> tuple[float, float]:
    """Position and speed ``tau`` seconds into a start-stop move (trapezoidal speed profile)."""
    duration = move_time(distance, speed, accel)
    tau = min(max(tau, 0.0), duration)
    ramp = speed / accel
    if distance >= speed * ramp:  # reaches walking speed
        if tau < ramp:
            return 0.5 * accel * tau * tau, accel * tau
        if tau < duration - ramp:
            return 0.5 * accel * ramp * ramp + speed * (tau - ramp), speed
    elif tau < duration / 2:
        return 0.5 * accel * tau * tau, accel * tau
    left = duration - tau
    return distance - 0.5 * accel * left * left, accel * left


def move_time(distance: float, speed: float, accel: float) -> float:
    ramp = speed / accel
    if distance >= speed * ramp:
        return distance / speed + ramp
    return 2 * math.sqrt(max(distance, 0.0) / accel)


class Smooth:
    """A smooth random signal in [-1, 1]: a few slow sinusoids with seeded frequencies and phases."""

    def __init__(self, rng: np.random.Generator, low_hz: float, high_hz: float, k: int = 3) -> None:
        self.freqs = rng.uniform(low_hz, high_hz, k)
        self.phases = rng.uniform(0, 2 * np.pi, k)
        self.weights = rng.uniform(0.5, 1.0, k)
        self.weights /= self.weights.sum()

    def __call__(self, t: float) -> float:
        return float(np.sum(self.weights * np.sin(2 * np.pi * self.freqs * t + self.phases)))


class CameraPath:
    """The camera over time: walking between waypoints, holding still at the stops, bobbing."""

    def __init__(self, waypoints: Sequence[Waypoint], speed: float, walking: Waypoint, rng: np.random.Generator) -> None:
        if len(waypoints) < 2 or any(b.x < a.x for a, b in zip(waypoints, waypoints[1:], strict=False)):
            raise ValueError("a camera path needs at least two waypoints, left to right")
        self.waypoints = tuple(waypoints)
        self.speed = speed
        self.accel = speed / ACCEL_S
        self.walking = walking  # the view while walking at full speed (its x and hold are not used)
        # (start of hold, end of hold / start of move, end of move) per waypoint
        self.events: list[tuple[float, float, float]] = []
        t = 0.0
        for k, wp in enumerate(self.waypoints):
            hold_end = t + wp.hold
            move_end = hold_end
            if k + 1 < len(self.waypoints):
                move_end += move_time(self.waypoints[k + 1].x - wp.x, speed, self.accel)
            self.events.append((t, hold_end, move_end))
            t = move_end
        self.duration = t
        self.bob_phase = float(rng.uniform(0, 2 * np.pi))
        self.sway_phase = float(rng.uniform(0, 2 * np.pi))
        self.tremor_x, self.tremor_y = Smooth(rng, 0.2, 0.9), Smooth(rng, 0.2, 0.9)
        self.wobble = Smooth(rng, 0.1, 0.5)
        self.roll_amp = float(rng.uniform(0.8, 1.8))

    def at(self, t: float) -> CameraState:
        k = 0
        while k + 1 < len(self.events) and t >= self.events[k][2]:
            k += 1
        start, hold_end, move_end = self.events[k]
        a = self.waypoints[k]
        if t < hold_end or k + 1 == len(self.waypoints):
            x, speed, s, b = a.x, 0.0, 0.0, a
            closeness = 1.0
        else:
            b = self.waypoints[k + 1]
            moved, speed = _move(b.x - a.x, self.speed, self.accel, t - hold_end)
            x = a.x + moved
            s = moved / max(b.x - a.x, 1e-9)
            closeness = 1.0 - speed / self.speed
        # a stop pulls the view closer and onto the artwork; walking pushes it back to eye level
        window = (1 - s) * a.window + s * b.window
        aim_y = (1 - s) * a.aim_y + s * b.aim_y
        tx = (1 - s) * a.tilt[0] + s * b.tilt[0]
        ty = (1 - s) * a.tilt[1] + s * b.tilt[1]
        walking = self.walking
        window = closeness * window + (1 - closeness) * walking.window
        aim_y = closeness * aim_y + (1 - closeness) * walking.aim_y
        tx = closeness * tx + (1 - closeness) * walking.tilt[0]
        ty = closeness * ty + (1 - closeness) * walking.tilt[1]
        pace = speed / self.speed
        step = 2 * np.pi * STEP_HZ * t
        y = aim_y + window * (0.02 * pace * math.sin(step + self.bob_phase) + 0.005 * self.tremor_y(t))
        x += window * (0.012 * pace * math.sin(step / 2 + self.sway_phase) + 0.005 * self.tremor_x(t))
        roll = self.roll_amp * self.wobble(t) + 1.2 * pace * math.sin(step / 2 + self.sway_phase + 1.0)
        paused = a.artwork if speed == 0.0 and a.artwork is not None else None
        return CameraState(x, y, speed, window, math.hypot(tx, ty), math.degrees(math.atan2(ty, tx)), roll, paused)


def tilt_vector(tilt: float, azimuth: float) -> tuple[float, float]:
    return tilt * math.cos(math.radians(azimuth)), tilt * math.sin(math.radians(azimuth))


def homography(state: CameraState, out_w: int, out_h: int) -> np.ndarray:
    """Wall -> picture homography of a camera state: the window around its aim, seen at its tilt and roll."""
    half_h = state.window / 2
    half_w = half_h * out_w / out_h
    target = (state.x - half_w, state.y - half_h, state.x + half_w, state.y + half_h)
    return look_at(target, out_w, out_h, tilt=state.tilt, azimuth=state.azimuth, roll=state.roll, hfov=_HFOV,
                   fill=1.0, offset=(0.0, 0.0), cover=True)

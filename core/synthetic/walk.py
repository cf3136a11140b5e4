"""A seeded visitor's walk along a gallery wall: a handheld video with per-frame ground truth.

The museum's artworks, drawn exactly as ``make_museum`` draws them, hang in their frames on one
long wall with gaps of bare wall, one long bare stretch, a door under a fire-exit sign and a
bench. A handheld camera walks along it: it pans at walking speed with a bob and a wobble, looks
a little ahead, stops in front of some artworks and steps closer, and passers-by cross the view.
The picture then goes through motion blur, vignetting, auto-exposure, white balance, sensor
noise and JPEG.

The wall is a :class:`~muselens.core.synthetic.scenes.Scene` in wall units (one unit =
one canonical artwork pixel); every frame renders only the wall region it sees, at the
resolution it needs, and maps it to the picture with a homography from
:func:`~muselens.core.synthetic.camera.look_at`. The ground truth (which artwork is in
view, how much of each shows, whether a passer-by hides one, the homography itself) is computed
from the same geometry as the pixels. Every random number comes from the walk's seed; frames are
byte-identical for a seed.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from muselens.core.synthetic import seeding
from muselens.core.synthetic.artworks import value_noise
from muselens.core.synthetic.camera import _magnification, look_at, project
from muselens.core.data.images import encode_jpeg
from muselens.core import checks
from muselens.core.synthetic.effects import gaussian_noise
from muselens.core.synthetic.museum import (
    GENERATOR,
    GENERATOR_VERSION,
    InstancePlan,
    MuseumPlan,
    _opencv_threads,
    draw_artwork,
    plan_museum,
)
from muselens.core.synthetic.scenes import (
    FrameStyle,
    Layer,
    Rect,
    Scene,
    _framed,
    _plaque,
    museum_look,
    render_region,
)

# The name in every walk.json: an identifier kept as first written (see GENERATOR), not a module path.
WALK_GENERATOR = "muselens.runtime.data.synthetic.walk"
# Bump when a change here changes the bytes a seed produces.
WALK_VERSION = 1

# Seeding purpose of everything a walk draws (seeding.py uses 0..5 for the museum itself).
WALK_PURPOSE = seeding.WALK
_LAYOUT, _ORDER, _CAMERA, _PASSERS, _FRAME = 0, 1, 2, 3, 4

JPEG_QUALITY = 85
MIN_CENTRE_COVERAGE = 0.25  # in_view is null below this share of the central third covered
MIN_HIDDEN_SHARE = 0.05  # a frame is occluded when a passer-by hides this much of an artwork's part in view
_CODECS = (("mp4v", "walk.mp4"), ("MJPG", "walk.avi"))  # tried in order
_OWN_ENTRIES = ("frames", "walk.mp4", "walk.avi", "walk.json")

# Wall geometry, in units of the museum's canonical artwork side u (artworks hang 0.6-1.05 u long).
_FLOOR_Y = 1.2  # floor line below eye level (y grows downwards)
_TOP_Y = -1.6  # top of the rendered wall
_WALK_WINDOW = 1.6  # short side of the view while walking
_MIN_STOP_WINDOW = 0.5  # the visitor steps no closer than this
_LEAD = 1.0  # bare wall before the first and after the last artwork
_WALK_AIM_Y = 0.12  # the phone is held a little below eye level while walking
_HFOV = 60.0

# Time.
_ACCEL_S = 0.8  # from standing to walking speed
_MAX_SPEED = 1.7  # u per second: a brisk walk, for a walk short on time
_MIN_PAUSE_S = 1.0
_COMFY_PAUSE_S = 1.5  # when the wall is filled automatically, a pause is at least this long
_STEP_HZ = 1.8  # footsteps per second: the camera's bob


# ----------------------------------------------------------------------------- the wall


@dataclass(frozen=True, eq=False)
class HungArtwork:
    """One artwork on the wall: its canvas and outer frame in wall units."""

    id: str
    title: str
    kind: str
    rect: Rect
    frame: Rect
    glass: bool
    image: np.ndarray  # what hangs: the canonical render, with a faint sheen if behind glass


@dataclass(frozen=True)
class Fixture:
    """Something on the wall that is not an artwork: a door, an exit sign, a bench, a bare stretch."""

    kind: str
    rect: Rect


@dataclass(frozen=True, eq=False)
class Wall:
    unit: float
    length: float
    scene: Scene
    artworks: tuple[HungArtwork, ...]
    fixtures: tuple[Fixture, ...]
    light: WallLight


@dataclass(frozen=True, eq=False)
class WallLight:
    """Spotlights over the artworks and a slow brightness drift along the wall, as a gain."""

    spots: np.ndarray  # (n, 5): cx, cy, sigma_x, sigma_y, amplitude
    waves: np.ndarray  # (k, 3): amplitude, wavelength, phase
    unit: float

    def gain(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        g = np.ones_like(x, dtype=np.float32)
        for amp, wavelength, phase in self.waves:
            g += np.float32(amp) * np.sin(2 * np.pi * x / wavelength + phase).astype(np.float32)
        g *= (1 - 0.1 * np.clip(y / (1.5 * self.unit), -1.5, 1.5) ** 2).astype(np.float32)
        for cx, cy, sx, sy, amp in self.spots:
            if not np.any(np.abs(x - cx) < 4 * sx):
                continue
            g += np.float32(amp) * np.exp(-((x - cx) ** 2) / (2 * sx * sx) - ((y - cy) ** 2) / (2 * sy * sy)).astype(
                np.float32)
        return g


def _sheen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A faint diagonal reflection on glass, screen-blended into a copy of the artwork."""
    h, w = image.shape[:2]
    lh, lw = max(2, h // 8), max(2, w // 8)
    g = np.zeros((lh, lw), np.float32)
    x0 = rng.uniform(0, lw)
    cv2.line(g, (int(x0), 0), (int(x0 - rng.uniform(0.2, 0.6) * lw), lh), 1.0, max(1, int(lw * rng.uniform(0.08, 0.2))))
    g = cv2.GaussianBlur(g, (0, 0), max(1.0, lw * 0.05))
    glare = cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)[:, :, None] * float(rng.uniform(0.1, 0.22))
    out = 255 - (255 - image.astype(np.float32)) * (1 - glare)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _door(layers: list[Layer], x0: float, u: float, floor_y: float, wall: tuple[int, int, int],
          floor: tuple[int, int, int], rng: np.random.Generator) -> tuple[Fixture, Fixture]:
    """A doorway onto a darker room, with its casing, and a fire-exit sign beside it."""
    w, h = 0.95 * u, 2.05 * u
    rect = (x0, floor_y - h, x0 + w, floor_y)
    casing = 0.06 * u
    layers.append(Layer((rect[0] - casing, rect[1] - casing, rect[2] + casing, rect[3]),
                        tuple(int(c * 0.8) for c in wall)))
    layers.append(Layer(rect, tuple(int(c) for c in rng.integers(20, 90, 3))))
    layers.append(Layer((rect[0], floor_y - 0.35 * u, rect[2], floor_y), tuple(int(c * 0.6) for c in floor)))
    sw, sh = 0.34 * u, 0.13 * u  # beside the door at eye level, where a visitor looking for it sees it
    sx, sy = rect[2] + casing + 0.12 * u, -0.35 * u - sh / 2
    layers.append(Layer((sx, sy, sx + sw, sy + sh), (60, 160, 40)))
    layers.append(Layer((sx + 0.12 * sw, sy + 0.35 * sh, sx + 0.6 * sw, sy + 0.65 * sh), (240, 240, 240)))
    layers.append(Layer((sx + 0.68 * sw, sy + 0.2 * sh, sx + 0.85 * sw, sy + 0.8 * sh), (240, 240, 240)))
    return Fixture("door", rect), Fixture("exit_sign", (sx, sy, sx + sw, sy + sh))


def _bench(layers: list[Layer], cx: float, u: float, floor_y: float) -> Fixture:
    """A dark bench in front of the wall: a seat on two legs."""
    w = 1.2 * u
    x0, x1 = cx - w / 2, cx + w / 2
    seat_top = floor_y - 0.46 * u
    layers.append(Layer((x0, seat_top, x1, seat_top + 0.07 * u), (40, 50, 60)))
    layers.append(Layer((x0 + 0.05 * w, seat_top + 0.07 * u, x0 + 0.09 * w, floor_y), (30, 30, 30)))
    layers.append(Layer((x1 - 0.09 * w, seat_top + 0.07 * u, x1 - 0.05 * w, floor_y), (30, 30, 30)))
    return Fixture("bench", (x0, seat_top, x1, floor_y))


def build_wall(works: Sequence[tuple[InstancePlan, np.ndarray, FrameStyle]], u: float,
               rng: np.random.Generator) -> Wall:
    """Hang ``works`` left to right with bare wall between them, a door, a bench and a long bare stretch."""
    if not works:
        raise ValueError("a wall needs at least one artwork")
    n = len(works)
    wall_colour, floor_colour = museum_look(rng)
    floor_y = _FLOOR_Y * u
    door_after = 0
    stretch_after = max(1, n // 2) if n >= 2 else 0
    bench_under = int(rng.integers(n))
    art_layers: list[Layer] = []
    fixtures: list[Fixture] = []
    hung: list[HungArtwork] = []
    spots = []
    x = _LEAD * u
    for i, (inst, image, frame) in enumerate(works):
        long_side = u * (rng.uniform(0.85, 1.05) if inst.kind == "cabinet" else rng.uniform(0.6, 0.9))
        ih, iw = image.shape[:2]
        w, h = (long_side, long_side * ih / iw) if iw >= ih else (long_side * iw / ih, long_side)
        cy = u * (0.1 if inst.kind == "cabinet" else 0.0) + u * rng.uniform(-0.06, 0.06)
        margin = (frame.width + frame.mat) * long_side
        rect = (x + margin, cy - h / 2, x + margin + w, cy + h / 2)
        layers, outer = _framed(rect, frame, long_side)
        picture = _sheen(image, rng) if frame.glass else image
        picture.flags.writeable = False
        art_layers += layers + [Layer(rect, image=picture)]
        if rng.random() < 0.6:
            _plaque(art_layers, outer, long_side, rng)
        hung.append(HungArtwork(inst.id, inst.title, inst.kind, rect, outer, frame.glass, picture))
        spots.append(((rect[0] + rect[2]) / 2, outer[1] - 0.1 * u, 0.45 * w + 0.2 * u, 0.7 * u,
                      rng.uniform(0.12, 0.3)))
        if i == bench_under:
            fixtures.append(_bench(art_layers, (rect[0] + rect[2]) / 2, u, floor_y))
        x = outer[2]
        if i == door_after:
            x += u * rng.uniform(0.5, 0.75)
            fixtures += _door(art_layers, x, u, floor_y, wall_colour, floor_colour, rng)
            x = fixtures[-1].rect[2]  # the exit sign's right edge
        if i == stretch_after:
            start = x
            x += u * rng.uniform(3.3, 3.8)  # wider than the walking view
            fixtures.append(Fixture("bare_stretch", (start, _TOP_Y * u, x, floor_y)))
        elif i < n - 1:
            x += u * rng.uniform(0.45, 0.9)
    length = x + _LEAD * u
    bounds = (-2.5 * u, _TOP_Y * u, length + 2.5 * u, floor_y + 0.7 * u)
    # plaster: the wall colour with a soft mottle, stretched over the wall above the skirting
    skirting_top = floor_y - 0.012 * (bounds[3] - bounds[1])
    tw = max(8, int((bounds[2] - bounds[0]) / u * 40))
    th = max(8, int((skirting_top - bounds[1]) / u * 40))
    mottle = value_noise(rng, th, tw, cells=tw / 6, octaves=3)
    plaster = np.clip(np.array(wall_colour, np.float32) * (0.96 + 0.08 * mottle[:, :, None]), 0, 255).astype(np.uint8)
    base = [Layer((bounds[0], bounds[1], bounds[2], skirting_top), image=plaster)]
    waves = np.array([(rng.uniform(0.02, 0.05), u * rng.uniform(3, 9), rng.uniform(0, 2 * np.pi)) for _ in range(3)])
    light = WallLight(np.array(spots, np.float64), waves, u)
    scene = Scene(wall_colour, floor_colour, floor_y, bounds, base + art_layers)
    return Wall(u, length, scene, tuple(hung), tuple(fixtures), light)


# ----------------------------------------------------------------------------- the camera's path


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
    duration = _move_time(distance, speed, accel)
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


def _move_time(distance: float, speed: float, accel: float) -> float:
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
        self.accel = speed / _ACCEL_S
        self.walking = walking  # the view while walking at full speed (its x and hold are not used)
        # (start of hold, end of hold / start of move, end of move) per waypoint
        self.events: list[tuple[float, float, float]] = []
        t = 0.0
        for k, wp in enumerate(self.waypoints):
            hold_end = t + wp.hold
            move_end = hold_end
            if k + 1 < len(self.waypoints):
                move_end += _move_time(self.waypoints[k + 1].x - wp.x, speed, self.accel)
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
        step = 2 * np.pi * _STEP_HZ * t
        y = aim_y + window * (0.02 * pace * math.sin(step + self.bob_phase) + 0.005 * self.tremor_y(t))
        x += window * (0.012 * pace * math.sin(step / 2 + self.sway_phase) + 0.005 * self.tremor_x(t))
        roll = self.roll_amp * self.wobble(t) + 1.2 * pace * math.sin(step / 2 + self.sway_phase + 1.0)
        paused = a.artwork if speed == 0.0 and a.artwork is not None else None
        return CameraState(x, y, speed, window, math.hypot(tx, ty), math.degrees(math.atan2(ty, tx)), roll, paused)


def _tilt_vector(tilt: float, azimuth: float) -> tuple[float, float]:
    return tilt * math.cos(math.radians(azimuth)), tilt * math.sin(math.radians(azimuth))


def homography(state: CameraState, out_w: int, out_h: int) -> np.ndarray:
    """Wall -> picture homography of a camera state: the window around its aim, seen at its tilt and roll."""
    half_h = state.window / 2
    half_w = half_h * out_w / out_h
    target = (state.x - half_w, state.y - half_h, state.x + half_w, state.y + half_h)
    return look_at(target, out_w, out_h, tilt=state.tilt, azimuth=state.azimuth, roll=state.roll, hfov=_HFOV,
                   fill=1.0, offset=(0.0, 0.0), cover=True)


# ----------------------------------------------------------------------------- the plan of a walk


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
    rng = seeding.rng_for(seed, WALK_PURPOSE, _LAYOUT, len(works))
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
    walk_tilt = _tilt_vector(float(rng.uniform(6, 12)), 180.0)  # looking a little ahead, along the wall
    start = Waypoint(0.2 * u, 0.0, walk_window, _WALK_AIM_Y * u, walk_tilt, None)
    stops = []
    for i in paused:
        art = wall.artworks[i]
        fx0, fy0, fx1, fy1 = art.frame
        fill = rng.uniform(0.78, 0.9)
        window = max(_MIN_STOP_WINDOW * u, max(fy1 - fy0, (fx1 - fx0) / aspect) / fill)
        aim_y = (fy0 + fy1) / 2 + window * rng.uniform(-0.04, 0.04)
        x = (fx0 + fx1) / 2 + window * aspect * rng.uniform(-0.04, 0.04)
        tilt = _tilt_vector(float(9 * math.sqrt(rng.uniform(0, 1))), float(rng.uniform(0, 360)))
        stops.append(Waypoint(x, 0.0, window, aim_y, tilt, i))
    end = Waypoint(wall.length - 0.2 * u, 0.0, walk_window, start.aim_y, walk_tilt, None)
    waypoints = [start, *stops, end]
    speed = u * float(rng.uniform(0.9, 1.15))

    def needed_at(v: float) -> float:
        moving = sum(_move_time(b.x - a.x, v, v / _ACCEL_S) for a, b in zip(waypoints, waypoints[1:], strict=False))
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
    path = CameraPath(waypoints, speed, start, seeding.rng_for(seed, WALK_PURPOSE, _CAMERA))
    return WalkPlan(wall, path, paused)


# ----------------------------------------------------------------------------- passers-by


@dataclass(frozen=True)
class PasserBy:
    """A visitor crossing between the camera and the wall: close, so large, dark and out of focus."""

    enter: float  # seconds
    duration: float
    direction: int  # +1: left to right in the picture
    height: float  # the whole person, in picture heights (most of the body is below the picture)
    top: float  # top of the head, in picture heights from the top
    colour: tuple[float, float, float]
    blur: float  # edge blur, in picture heights
    step_phase: float

    def x(self, t: float, out_w: int) -> float | None:
        s = (t - self.enter) / self.duration
        if not 0 <= s <= 1:
            return None
        if self.direction < 0:
            s = 1 - s
        return (-0.3 + 1.6 * s) * out_w


def schedule_passers(seed: int, seconds: float, plan: WalkPlan) -> tuple[PasserBy, ...]:
    """One passer-by per nine seconds or so, the first crossing in front of the longest stop."""
    rng = seeding.rng_for(seed, WALK_PURPOSE, _PASSERS)
    count = max(1, round(seconds / 9))
    holds = [(wp.hold, k) for k, wp in enumerate(plan.path.waypoints) if wp.artwork is not None]
    people = []
    for j in range(count):
        duration = float(rng.uniform(1.3, 2.4))
        if j == 0 and holds:
            _, k = max(holds)
            start, hold_end, _ = plan.path.events[k]
            enter = (start + hold_end) / 2 - duration / 2
        else:
            enter = float(rng.uniform(-0.5, max(0.0, seconds - duration + 0.5)))
        tone = rng.uniform(15, 70)
        colour = tuple(float(c) for c in np.clip(tone + rng.normal(0, 8, 3), 5, 110))
        people.append(PasserBy(enter, duration, 1 if rng.random() < 0.5 else -1, float(rng.uniform(1.6, 2.4)),
                               float(rng.uniform(0.22, 0.5)), colour, float(rng.uniform(0.006, 0.015)),
                               float(rng.uniform(0, 2 * np.pi))))
    return tuple(people)


def passer_mask(person: PasserBy, t: float, out_w: int, out_h: int) -> np.ndarray | None:
    """Soft quarter-resolution mask of a passer-by (head ellipse on a rounded body), or None if out of view."""
    cx = person.x(t, out_w)
    if cx is None:
        return None
    qw, qh = _quarter(out_w, out_h)
    sx, sy = qw / out_w, qh / out_h
    height = person.height * out_h
    top = person.top * out_h + 0.01 * out_h * math.sin(2 * np.pi * _STEP_HZ * t + person.step_phase)
    rh = 0.065 * height
    body_w, body_top = 4.2 * rh, top + 2.15 * rh
    rad = 0.3 * body_w
    mask = np.zeros((qh, qw), np.float32)
    cv2.ellipse(mask, (round(cx * sx), round((top + rh) * sy)), (max(1, round(0.8 * rh * sx)), max(1, round(rh * sy))),
                0, 0, 360, 1.0, -1, cv2.LINE_AA)
    cv2.rectangle(mask, (round((cx - 0.35 * rh) * sx), round((top + 1.6 * rh) * sy)),
                  (round((cx + 0.35 * rh) * sx), round((body_top + rad) * sy)), 1.0, -1)
    bottom = qh + 2
    cv2.rectangle(mask, (round((cx - body_w / 2) * sx), round((body_top + rad) * sy)),
                  (round((cx + body_w / 2) * sx), bottom), 1.0, -1)
    cv2.rectangle(mask, (round((cx - body_w / 2 + rad) * sx), round(body_top * sy)),
                  (round((cx + body_w / 2 - rad) * sx), bottom), 1.0, -1)
    for side in (-1, 1):
        cv2.circle(mask, (round((cx + side * (body_w / 2 - rad)) * sx), round((body_top + rad) * sy)),
                   max(1, round(rad * sx)), 1.0, -1, cv2.LINE_AA)
    if not mask.any():
        return None
    return cv2.GaussianBlur(mask, (0, 0), max(0.6, person.blur * qh))


def _quarter(out_w: int, out_h: int) -> tuple[int, int]:
    return max(2, (out_w + 3) // 4), max(2, (out_h + 3) // 4)


# ----------------------------------------------------------------------------- rendering


def _visible_region(H: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    corners = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float64)
    return project(np.linalg.inv(H), corners)


def render_view(wall: Wall, H: np.ndarray, out_w: int, out_h: int, vignette: np.ndarray) -> np.ndarray:
    """The lit wall through homography ``H`` (wall -> picture), float32 BGR, before the sensor.

    ``vignette`` is the lens's gain at 1/8 of the picture's resolution; it is folded into the
    wall's light so that one multiplication applies both.
    """
    seen = _visible_region(H, out_w, out_h)
    bx0, by0, bx1, by1 = wall.scene.bounds
    rx0, ry0 = max(seen[:, 0].min(), bx0), max(seen[:, 1].min(), by0)
    rx1, ry1 = min(seen[:, 0].max(), bx1), min(seen[:, 1].max(), by1)
    if rx1 <= rx0 or ry1 <= ry0:
        raise ValueError("the camera looks past the wall's bounds")
    centre = project(np.linalg.inv(H), np.array([[out_w / 2, out_h / 2]], np.float64))[0]
    scale = min(1.0, 1.3 * _magnification(H, centre))
    # only the layers the region touches: a long wall holds hundreds
    layers = [ly for ly in wall.scene.layers if ly.rect[2] > rx0 and ly.rect[0] < rx1]
    scene = Scene(wall.scene.wall, wall.scene.floor, wall.scene.floor_y, wall.scene.bounds, layers)
    region = render_region(scene, (rx0, ry0, rx1, ry1), scale)
    to_region = np.array([[scale, 0, -rx0 * scale], [0, scale, -ry0 * scale], [0, 0, 1]])
    img = cv2.warpPerspective(region, H @ np.linalg.inv(to_region), (out_w, out_h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    # the light falls on the wall: evaluate it where each coarse picture pixel lands on the wall
    lh, lw = vignette.shape
    gx, gy = np.meshgrid((np.arange(lw) + 0.5) * out_w / lw, (np.arange(lh) + 0.5) * out_h / lh)
    pts = project(np.linalg.inv(H), np.column_stack([gx.ravel(), gy.ravel()]))
    gain = wall.light.gain(pts[:, 0], pts[:, 1]).reshape(lh, lw).astype(np.float32) * vignette
    gain = cv2.resize(gain, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return cv2.multiply(img.astype(np.float32), cv2.merge([gain, gain, gain]))


def motion_blur(img: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Smear ``img`` along ``shift`` (pixels moved while the shutter was open)."""
    length = float(np.hypot(*shift))
    if length < 1.0:
        return img
    r = int(math.ceil(length / 2))
    k = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    dx, dy = shift / 2
    cv2.line(k, (round(r * 16 - dx * 16), round(r * 16 - dy * 16)), (round(r * 16 + dx * 16), round(r * 16 + dy * 16)),
             1.0, 1, cv2.LINE_AA, shift=4)
    return cv2.filter2D(img, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)


_LUMA = np.array([0.114, 0.587, 0.299], np.float32)


@dataclass
class Exposure:
    """Auto-exposure with a lag and a slow drift, white balance, tone curve and noise: fixed per walk."""

    drift: Smooth
    wb: np.ndarray
    gamma: float
    noise: float
    vignette: np.ndarray  # lens gain at 1/8 resolution, applied with the wall's light
    stops: float | None = None

    def develop(self, img: np.ndarray, t: float, dt: float, rng: np.random.Generator) -> np.ndarray:
        """The camera's picture (uint8 BGR) of the light ``img``; updates the auto-exposure."""
        h, w = img.shape[:2]
        small = cv2.resize(img, (max(2, w // 16), max(2, h // 16)), interpolation=cv2.INTER_AREA)
        luma = float((small @ _LUMA).mean())
        wanted = float(np.clip(math.log2(115.0 / max(luma, 1.0)), -1.5, 1.5))
        if self.stops is None:
            self.stops = wanted
        else:  # the camera catches up over about half a second
            self.stops += (wanted - self.stops) * (1 - math.exp(-dt / 0.5))
        stops = self.stops + 0.2 * self.drift(t)
        gain = (2**stops) * self.wb
        levels = cv2.convertScaleAbs(cv2.multiply(img, (float(gain[0]), float(gain[1]), float(gain[2]), 0.0)))
        tone = np.round(255 * (np.arange(256) / 255) ** self.gamma).astype(np.uint8)
        out = cv2.LUT(levels, tone).astype(np.float32)
        # read noise plus shot noise growing with the signal (and with the gain); chroma noise is coarser
        sigma = self.noise * 2 ** (0.5 * max(0.0, stops))
        spread = (sigma * (0.4 + np.sqrt(np.arange(256) / 255))).astype(np.float32)
        amp = spread[cv2.cvtColor(levels, cv2.COLOR_BGR2GRAY)]
        chroma = cv2.resize(gaussian_noise(rng, (max(1, h // 2), max(1, w // 2), 3)), (w, h),
                            interpolation=cv2.INTER_LINEAR)
        luma_noise = gaussian_noise(rng, (h, w)) * amp
        amp *= 0.6
        noise = cv2.add(cv2.multiply(chroma, cv2.merge([amp, amp, amp])), cv2.merge([luma_noise] * 3))
        out = cv2.add(out, noise)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def make_exposure(seed: int, out_w: int, out_h: int) -> Exposure:
    rng = seeding.rng_for(seed, WALK_PURPOSE, _CAMERA, 1)
    wb = np.exp(rng.normal(0, 0.05, 3))
    wb /= float(np.exp(np.log(wb).mean()))
    lw, lh = max(2, out_w // 8), max(2, out_h // 8)
    yy, xx = np.mgrid[0:lh, 0:lw].astype(np.float32)
    r2 = ((xx + 0.5) / lw - 0.5) ** 2 + ((yy + 0.5) / lh - 0.5) ** 2
    vignette = (1 - float(rng.uniform(0.2, 0.5)) * r2 * 2).astype(np.float32)
    return Exposure(Smooth(rng, 0.05, 0.3), wb.astype(np.float32), float(rng.uniform(0.9, 1.1)),
                    float(rng.uniform(2.0, 4.5)), vignette)


# ----------------------------------------------------------------------------- ground truth


def frame_truth(wall: Wall, H: np.ndarray, out_w: int, out_h: int, hidden: np.ndarray | None) -> dict:
    """What the frame shows: per artwork the share of it seen, the one in view, and occlusion.

    ``hidden`` is the quarter-resolution mask of passers-by (True where one stands).
    """
    qw, qh = _quarter(out_w, out_h)
    seen = _visible_region(H, out_w, out_h)
    sx0, sx1 = seen[:, 0].min(), seen[:, 0].max()
    picture = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float32)
    c0, c1 = qw // 3, qw - qw // 3
    r0, r1 = qh // 3, qh - qh // 3
    centre_area = (c1 - c0) * (r1 - r0)
    visible, coverage, occluded = [], {}, False
    for art in wall.artworks:
        x0, y0, x1, y1 = art.rect
        if x1 < sx0 or x0 > sx1:
            continue
        quad = project(H, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)).astype(np.float32)
        area = float(cv2.contourArea(quad))
        inside, _ = cv2.intersectConvexConvex(quad, picture)
        if area <= 0 or inside <= 0:
            continue
        in_frame = min(1.0, float(inside) / area)
        mask = np.zeros((qh, qw), np.uint8)
        cv2.fillConvexPoly(mask, np.round(quad * np.array([qw / out_w, qh / out_h], np.float32) * 16).astype(np.int32),
                           1, cv2.LINE_8, shift=4)
        pixels = int(mask.sum())
        hidden_share = 0.0
        if pixels and hidden is not None:
            hidden_share = float((mask.astype(bool) & hidden).sum()) / pixels
        occluded |= hidden_share >= MIN_HIDDEN_SHARE
        coverage[art.id] = float(mask[r0:r1, c0:c1].sum()) / centre_area
        fraction = in_frame * (1 - hidden_share)
        if fraction >= 0.005:
            visible.append({"id": art.id, "fraction": round(fraction, 4)})
    best = max(coverage, key=coverage.__getitem__) if coverage else None
    in_view = best if best is not None and coverage[best] >= MIN_CENTRE_COVERAGE else None
    return {
        "in_view": in_view,
        "centre_coverage": round(coverage[best], 4) if best is not None else 0.0,
        "visible": visible,
        "occluded": bool(occluded),
    }


# ----------------------------------------------------------------------------- the walk


@dataclass(frozen=True)
class WalkSummary:
    """What ``make_walk`` wrote, and how long it took."""

    out: Path
    frames: int
    fps: float
    seconds: float
    size: tuple[int, int]
    video: Path
    codec: str
    artworks: tuple[str, ...]  # hung on the wall, left to right
    paused_at: tuple[str, ...]  # where the visitor stopped
    artworks_passed: tuple[str, ...]  # in view at least once, in order
    seconds_without_artwork: float
    occluded_frames: int
    elapsed_s: float


def load_museum_plan(museum_dir: Path) -> MuseumPlan:
    """The plan of a museum ``make_museum`` wrote, rebuilt from its museum.json (so its artworks can be redrawn)."""
    meta_path = Path(museum_dir) / "museum.json"
    if not meta_path.is_file():
        raise ValueError(f"{museum_dir} has no museum.json: a walk needs a synthetic museum written by make-museum")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or meta.get("generator") != GENERATOR:
        raise ValueError(f"{meta_path} was not written by {GENERATOR}: a walk needs a synthetic museum")
    if meta.get("generator_version") != GENERATOR_VERSION:
        raise ValueError(f"{meta_path} is from generator version {meta.get('generator_version')}; this code draws "
                         f"version {GENERATOR_VERSION}, so its artworks would not match the museum's photos")
    try:
        plan = plan_museum(instances=meta["instances"], references=meta["references"], queries=meta["queries"],
                           distractors=meta["distractors"], seed=meta["seed"], size=meta["size"])
    except KeyError as err:
        raise ValueError(f"{meta_path} lacks {err}") from None
    csv_path = Path(museum_dir) / "instances.csv"
    if csv_path.is_file():
        ids = [line.split(",", 1)[0] for line in csv_path.read_text(encoding="utf-8").splitlines()[1:] if line]
        if ids != [inst.id for inst in plan.instances]:
            raise ValueError(f"{csv_path} lists other artworks than museum.json's seed draws")
    return plan


def _validate(seed: int, seconds: float, fps: float, size: tuple[int, int]) -> tuple[int, int]:
    if not 0 <= checks.integer(seed, "seed") < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    for name, value, high in (("seconds", seconds, 3600), ("fps", fps, 120)):
        checks.number(value, name, low=0, high=high, low_open=True)
    if round(seconds * fps) < 2:
        raise ValueError(f"a walk needs at least 2 frames; {seconds} s at {fps} fps gives {round(seconds * fps)}")
    if not isinstance(size, tuple | list) or len(size) != 2:
        raise TypeError(f"size must be (width, height), got {size!r}")
    w, h = size
    for name, value in (("width", w), ("height", h)):
        checks.integer(value, f"size {name}")
        if not 64 <= value <= 4096 or value % 2:
            raise ValueError(f"size {name} must be even and in [64, 4096] (video codecs want even sizes), got {value}")
    if not 1 / 3 <= w / h <= 3:
        raise ValueError(f"size aspect {w}x{h} is outside [1:3, 3:1]")
    return int(w), int(h)


def _choose(plan: MuseumPlan, artworks: Sequence[str] | None, seed: int, seconds: float,
            out_size: tuple[int, int]) -> WalkPlan:
    """The walk: the listed artworks, or as many of the museum's (in seeded order) as fill ``seconds``."""
    by_id = {inst.id: inst for inst in plan.instances}
    cache: dict[str, tuple[InstancePlan, np.ndarray, FrameStyle]] = {}

    def work(iid: str) -> tuple[InstancePlan, np.ndarray, FrameStyle]:
        if iid not in cache:
            image, frame = draw_artwork(plan, by_id[iid])
            cache[iid] = (by_id[iid], image, frame)
        return cache[iid]

    u = float(plan.canonical)
    if artworks is not None:
        try:
            return plan_walk([work(i) for i in artworks], u, seed, seconds, out_size)
        except _TooShort as err:
            raise ValueError(f"walking past {len(artworks)} artworks takes at least {err.needed:.1f} s; "
                             f"got seconds={seconds}") from None
    order = seeding.rng_for(seed, WALK_PURPOSE, _ORDER).permutation(len(plan.instances))
    ids = [plan.instances[int(k)].id for k in order]
    fits = 1
    for n in range(1, len(ids) + 1):  # as many as leave every stop a comfortable pause
        try:
            plan_walk([work(i) for i in ids[:n]], u, seed, seconds, out_size, _COMFY_PAUSE_S, hurry=False)
        except _TooShort:
            break
        fits = n
    try:
        return plan_walk([work(i) for i in ids[:fits]], u, seed, seconds, out_size)
    except _TooShort as err:
        raise ValueError(f"a walk past one artwork takes at least {err.needed:.1f} s; got seconds={seconds}") from None


def _check_artworks(plan: MuseumPlan, artworks: Sequence[str] | None) -> list[str] | None:
    if artworks is None:
        return None
    if isinstance(artworks, str) or not isinstance(artworks, Sequence):
        raise TypeError(f"artworks must be None or a list of instance ids, got {type(artworks).__name__}")
    ids = list(artworks)
    if not ids:
        raise ValueError("artworks must name at least one artwork (or be None to choose them)")
    known = {inst.id for inst in plan.instances}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"unknown artwork ids {unknown}; the museum has {sorted(known)[:5]}...")
    if len(set(ids)) != len(ids):
        raise ValueError(f"artworks lists an id twice: {ids}")
    return ids


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (overwrite or (out / "walk.json").is_file()):
            raise FileExistsError(f"{out} is not empty and holds no walk (no walk.json); choose an empty or new "
                                  f"folder, or pass overwrite=True to replace {', '.join(_OWN_ENTRIES)} there")
        for name in _OWN_ENTRIES:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    (out / "frames").mkdir(parents=True, exist_ok=True)


def _open_video(out: Path, fps: float, size: tuple[int, int]) -> tuple[cv2.VideoWriter, str, Path]:
    tried = []
    for codec, name in _CODECS:
        writer = cv2.VideoWriter(str(out / name), cv2.VideoWriter_fourcc(*codec), float(fps), size)
        if writer.isOpened():
            return writer, codec, out / name
        writer.release()
        (out / name).unlink(missing_ok=True)
        tried.append(f"{codec} ({name})")
    raise RuntimeError(f"OpenCV could not open a video writer with any of {', '.join(tried)}")


def _wall_json(plan: WalkPlan) -> dict:
    wall = plan.wall

    def box(r: Rect) -> dict:
        return {"x": round(r[0], 2), "width": round(r[2] - r[0], 2), "y": round(r[1], 2), "height": round(r[3] - r[1], 2)}

    return {
        "unit": wall.unit,
        "length": round(wall.length, 2),
        "floor_y": round(wall.scene.floor_y, 2),
        "artworks": [{"id": a.id, "title": a.title, "kind": a.kind, **box(a.rect), "frame": box(a.frame),
                      "glass": a.glass, "paused": k in plan.paused} for k, a in enumerate(wall.artworks)],
        "fixtures": [{"kind": f.kind, **box(f.rect)} for f in wall.fixtures],
    }


def make_walk(museum_dir: Path | str, out: Path | str, *, seed: int = 0, seconds: float = 20.0, fps: float = 10.0,
              size: tuple[int, int] = (640, 360), artworks: Sequence[str] | None = None, progress: bool = True,
              overwrite: bool = False) -> WalkSummary:
    """Write a visitor's walk past ``museum_dir``'s artworks to ``out``: frames, a video and walk.json.

    ``artworks`` hangs those ids in that order; ``None`` hangs as many of the museum's artworks
    (in an order drawn from ``seed``) as a walk of ``seconds`` passes comfortably. The same
    arguments give byte-identical frames. Rendering runs on one OpenCV thread.
    """
    out_w, out_h = _validate(seed, seconds, fps, size)
    museum_dir, out = Path(museum_dir), Path(out)
    museum = load_museum_plan(museum_dir)
    ids = _check_artworks(museum, artworks)
    started = time.perf_counter()
    with _opencv_threads(1):
        plan = _choose(museum, ids, seed, float(seconds), (out_w, out_h))
        people = schedule_passers(seed, float(seconds), plan)
        exposure = make_exposure(seed, out_w, out_h)
        _prepare(out, overwrite)
        writer, codec, video = _open_video(out, fps, (out_w, out_h))
        n_frames = round(seconds * fps)
        shutter = min(1 / 30, 0.5 / fps)
        records = []
        try:
            with tqdm(total=n_frames, unit="frame", desc="make-walk", file=sys.stderr, disable=not progress) as bar:
                for i in range(n_frames):
                    t = i / fps
                    records.append(_frame(plan, people, exposure, i, t, 1 / fps, shutter, seed, out, writer,
                                          (out_w, out_h)))
                    bar.update(1)
        finally:
            writer.release()
    passed: list[str] = []
    for r in records:
        if r["in_view"] is not None and (not passed or passed[-1] != r["in_view"]):
            passed.append(r["in_view"])
    blank = sum(r["in_view"] is None for r in records)
    summary = WalkSummary(
        out=out, frames=n_frames, fps=float(fps), seconds=float(seconds), size=(out_w, out_h), video=video,
        codec=codec, artworks=tuple(a.id for a in plan.wall.artworks),
        paused_at=tuple(plan.wall.artworks[k].id for k in plan.paused), artworks_passed=tuple(dict.fromkeys(passed)),
        seconds_without_artwork=round(blank / fps, 3), occluded_frames=sum(r["occluded"] for r in records),
        elapsed_s=round(time.perf_counter() - started, 3))
    path = plan.path
    doc = {
        "generator": WALK_GENERATOR,
        "generator_version": WALK_VERSION,
        "museum": {"path": str(museum_dir), "seed": museum.seed, "instances": len(museum.instances),
                   "canonical_size": museum.canonical},
        "seed": seed,
        "seconds": float(seconds),
        "fps": float(fps),
        "size": [out_w, out_h],
        "frame_count": n_frames,
        "jpeg_quality": JPEG_QUALITY,
        "video": {"file": video.name, "codec": codec},
        "ground_truth": {"centre_region": "central third of the picture", "min_centre_coverage": MIN_CENTRE_COVERAGE,
                         "min_hidden_share": MIN_HIDDEN_SHARE,
                         "homography": "wall units -> picture pixels, row-major 3x3"},
        "wall": _wall_json(plan),
        "stops": [{"id": plan.wall.artworks[wp.artwork].id, "x": round(wp.x, 2), "arrive_s": round(ev[0], 3),
                   "leave_s": round(ev[1], 3)}
                  for wp, ev in zip(path.waypoints, path.events, strict=True) if wp.artwork is not None],
        "passers_by": [{"enter_s": round(p.enter, 3), "leave_s": round(p.enter + p.duration, 3),
                        "direction": "right" if p.direction > 0 else "left"} for p in people],
        "summary": {"artworks": list(summary.artworks), "paused_at": list(summary.paused_at),
                    "artworks_passed": list(summary.artworks_passed),
                    "seconds_without_artwork": summary.seconds_without_artwork,
                    "occluded_frames": summary.occluded_frames},
        "frames": records,
    }
    (out / "walk.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return summary


def _frame(plan: WalkPlan, people: Sequence[PasserBy], exposure: Exposure, i: int, t: float, dt: float,
           shutter: float, seed: int, out: Path, writer: cv2.VideoWriter, size: tuple[int, int]) -> dict:
    """Render, write and describe frame ``i``."""
    out_w, out_h = size
    wall = plan.wall
    state = plan.path.at(t)
    H = homography(state, out_w, out_h)
    img = render_view(wall, H, out_w, out_h, exposure.vignette)
    # passers-by, near the lens: dark, soft-edged, a little lighter at the shoulders
    hidden = None
    for person in people:
        mask = passer_mask(person, t, out_w, out_h)
        if mask is None:
            continue
        hidden = (mask > 0.5) if hidden is None else hidden | (mask > 0.5)
        cols = np.flatnonzero(mask.max(axis=0) > 1e-3)
        qw = mask.shape[1]
        x0, x1 = int(cols[0]) * out_w // qw, min(out_w, (int(cols[-1]) + 2) * out_w // qw)
        m = cv2.resize(mask, (out_w, out_h), interpolation=cv2.INTER_LINEAR)[:, x0:x1, None]
        shade = np.linspace(1.25, 0.8, out_h, dtype=np.float32)[:, None, None]
        img[:, x0:x1] = img[:, x0:x1] * (1 - m) + np.array(person.colour, np.float32) * shade * m
    # motion blur: how far the picture's centre moves while the shutter is open
    centre = project(np.linalg.inv(H), np.array([[out_w / 2, out_h / 2]], np.float64))
    before = homography(plan.path.at(t - shutter / 2), out_w, out_h)
    after = homography(plan.path.at(t + shutter / 2), out_w, out_h)
    img = motion_blur(img, (project(after, centre) - project(before, centre))[0])
    rng = seeding.rng_for(seed, WALK_PURPOSE, _FRAME, i)
    pixels = exposure.develop(img, t, dt, rng)
    data = encode_jpeg(pixels, JPEG_QUALITY, order="BGR")
    (out / "frames" / f"{i:06d}.jpg").write_bytes(data)
    writer.write(pixels)
    truth = frame_truth(wall, H, out_w, out_h, hidden)
    return {
        "index": i,
        "time_s": round(t, 4),
        "in_view": truth["in_view"],
        "centre_coverage": truth["centre_coverage"],
        "visible": truth["visible"],
        "occluded": truth["occluded"],
        "paused": state.paused is not None,
        "speed": round(state.speed / wall.unit, 3),
        "homography": [float(f"{v:.9g}") for v in (H / H[2, 2]).ravel()],
    }


__all__ = ["WalkSummary", "build_wall", "frame_truth", "load_museum_plan", "make_walk", "plan_walk"]

"""The wall a visitor's walk passes: the museum's artworks hung in their frames with gaps of bare
wall, one long bare stretch, a door under a fire-exit sign and a bench, lit by spotlights.

The wall is a :class:`~muselens.core.synthetic.scenes.Scene` in wall units (one unit = one
canonical artwork pixel); :func:`build_wall` hangs the works and records where each artwork and
fixture is, which is what a walk's ground truth is computed from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from muselens.core.synthetic.artworks import value_noise
from muselens.core.synthetic.museum import InstancePlan
from muselens.core.synthetic.scenes import FrameStyle, Layer, Rect, Scene, _framed, _plaque, museum_look

# Wall geometry, in units of the museum's canonical artwork side u (artworks hang 0.6-1.05 u long).
_FLOOR_Y = 1.2  # floor line below eye level (y grows downwards)
_TOP_Y = -1.6  # top of the rendered wall
_LEAD = 1.0  # bare wall before the first and after the last artwork


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

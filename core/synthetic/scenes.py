"""The gallery wall a photo is taken of: the artwork in its frame, neighbours, floor, fittings.

A scene is a flat description in wall units (one unit = one canonical artwork pixel): a wall
colour, a floor line and a list of rectangles that are filled or carry an image. The camera
asks for just the part of the wall it sees, at just the resolution it needs
(:func:`render_region`), so a close-up reads the artwork at full resolution while a wide view
never touches more pixels than it shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1 in wall units

DISTRACTOR_KINDS = ("wall", "empty_frame", "floor", "visitors", "doorway")

# Painted walls and floors of the museum (BGR).
_WALLS = ((236, 236, 232), (214, 218, 220), (60, 50, 120), (70, 90, 60), (110, 80, 50), (200, 210, 225),
          (150, 150, 150), (40, 40, 45))
_FLOORS = ((60, 90, 130), (90, 120, 160), (120, 120, 120), (70, 70, 75), (170, 180, 190))
_FRAMES = ((40, 150, 200), (30, 110, 160), (20, 20, 20), (235, 235, 235), (40, 70, 110), (150, 160, 170))


@dataclass(frozen=True, eq=False)
class Layer:
    """A rectangle on the wall: filled with ``colour``, or showing ``image`` stretched over it."""

    rect: Rect
    colour: tuple[int, int, int] | None = None
    image: np.ndarray | None = None
    alpha: float = 1.0


@dataclass(eq=False)
class Scene:
    wall: tuple[int, int, int]
    floor: tuple[int, int, int]
    floor_y: float
    bounds: Rect  # nothing is drawn outside; the camera clamps what it renders to this
    layers: list[Layer] = field(default_factory=list)
    artwork: Rect | None = None  # the recognised artwork's canvas, if any
    frame: Rect | None = None  # the artwork with its frame
    glass: bool = False  # the artwork is behind glass: reflections and glare


@dataclass(frozen=True)
class FrameStyle:
    """How an artwork is hung: fixed per artwork, so every photo of it shows the same frame."""

    width: float  # fraction of the artwork's long side
    colour: tuple[int, int, int]
    mat: float  # passe-partout width, fraction of the long side (0: none)
    glass: bool


def sample_frame(kind: str, rng: np.random.Generator) -> FrameStyle:
    colour = _FRAMES[int(rng.integers(len(_FRAMES)))]
    if kind == "painting":
        return FrameStyle(float(rng.uniform(0.03, 0.09)), colour, 0.0, bool(rng.random() < 0.3))
    if kind == "poster":
        mat = float(rng.uniform(0.03, 0.08)) if rng.random() < 0.4 else 0.0
        return FrameStyle(float(rng.uniform(0.008, 0.025)), colour, mat, bool(rng.random() < 0.6))
    if kind == "texture":
        return FrameStyle(float(rng.uniform(0.0, 0.02)), colour, 0.0, bool(rng.random() < 0.15))
    if kind == "cabinet":  # the cabinet carries its own frame; its front is glass
        return FrameStyle(0.0, colour, 0.0, True)
    raise ValueError(f"unknown artwork kind {kind!r}")


def render_region(scene: Scene, region: Rect, scale: float) -> np.ndarray:
    """Rasterise ``region`` of the wall at ``scale`` pixels per wall unit (BGR uint8)."""
    x0, y0, x1, y1 = region
    if not (x1 > x0 and y1 > y0 and scale > 0):
        raise ValueError(f"empty region {region} or non-positive scale {scale}")
    w, h = max(1, int(np.ceil((x1 - x0) * scale))), max(1, int(np.ceil((y1 - y0) * scale)))
    canvas = np.empty((h, w, 3), np.uint8)
    canvas[:] = scene.wall
    fy = int(round((scene.floor_y - y0) * scale))
    if fy < h:
        skirting = max(0, fy - max(1, int(round(0.012 * (scene.bounds[3] - scene.bounds[1]) * scale))))
        canvas[max(0, skirting):max(0, fy)] = tuple(int(c * 0.55) for c in scene.wall)
        canvas[max(0, fy):] = scene.floor
    for layer in scene.layers:
        _paint(canvas, layer, x0, y0, scale)
    return canvas


def _paint(canvas: np.ndarray, layer: Layer, x0: float, y0: float, scale: float) -> None:
    h, w = canvas.shape[:2]
    lx0, ly0, lx1, ly1 = layer.rect
    dx0, dy0 = int(round((lx0 - x0) * scale)), int(round((ly0 - y0) * scale))
    dx1, dy1 = int(round((lx1 - x0) * scale)), int(round((ly1 - y0) * scale))
    vx0, vy0, vx1, vy1 = max(dx0, 0), max(dy0, 0), min(dx1, w), min(dy1, h)
    if vx1 <= vx0 or vy1 <= vy0:
        return
    if layer.image is None:
        patch = np.array(layer.colour, np.uint8)
    else:
        ih, iw = layer.image.shape[:2]
        sx, sy = iw / (dx1 - dx0), ih / (dy1 - dy0)
        cx0, cy0 = int((vx0 - dx0) * sx), int((vy0 - dy0) * sy)
        cx1, cy1 = max(cx0 + 1, int(np.ceil((vx1 - dx0) * sx))), max(cy0 + 1, int(np.ceil((vy1 - dy0) * sy)))
        crop = layer.image[cy0:cy1, cx0:cx1]
        shrinking = sx > 1 and sy > 1
        patch = cv2.resize(crop, (vx1 - vx0, vy1 - vy0),
                           interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    target = canvas[vy0:vy1, vx0:vx1]
    if layer.alpha >= 1:
        target[:] = patch
        return
    if patch.ndim == 1:
        patch = np.empty_like(target)
        patch[:] = layer.colour
    cv2.addWeighted(target, 1 - layer.alpha, patch, layer.alpha, 0, dst=target)


def museum_look(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """One photo's wall and floor colours, drawn from the museum's rooms."""
    return _WALLS[int(rng.integers(len(_WALLS)))], _FLOORS[int(rng.integers(len(_FLOORS)))]


def _framed(rect: Rect, frame: FrameStyle, long_side: float) -> tuple[list[Layer], Rect]:
    """Layers of a frame (and mat) around an artwork rect, and the outer rect they cover."""
    x0, y0, x1, y1 = rect
    layers: list[Layer] = []
    m = frame.mat * long_side
    fw = frame.width * long_side
    ox0, oy0, ox1, oy1 = x0 - m - fw, y0 - m - fw, x1 + m + fw, y1 + m + fw
    shadow = fw * 0.4 + 0.01 * long_side
    layers.append(Layer((ox0 + shadow, oy0 + shadow, ox1 + shadow, oy1 + shadow), (0, 0, 0), alpha=0.3))
    if fw > 0:
        dark = tuple(int(c * 0.6) for c in frame.colour)
        layers.append(Layer((ox0, oy0, ox1, oy1), dark))
        inset = fw * 0.25
        layers.append(Layer((ox0 + inset, oy0 + inset, ox1 - inset, oy1 - inset), frame.colour))
        lip = fw * 0.15
        light = tuple(min(255, int(c * 1.25) + 20) for c in frame.colour)
        layers.append(Layer((x0 - m - lip, y0 - m - lip, x1 + m + lip, y1 + m + lip), light))
    if m > 0:
        layers.append(Layer((x0 - m, y0 - m, x1 + m, y1 + m), (238, 240, 242)))
    return layers, (ox0, oy0, ox1, oy1)


def _plaque(layers: list[Layer], frame_rect: Rect, long_side: float, rng: np.random.Generator) -> None:
    """The little label beside a work: a card with a few lines of grey text."""
    x = frame_rect[2] + long_side * rng.uniform(0.05, 0.2)
    y = frame_rect[3] - long_side * rng.uniform(0.05, 0.25)
    w, h = long_side * 0.12, long_side * 0.07
    layers.append(Layer((x, y, x + w, y + h), (235, 238, 240)))
    for k in range(3):
        ly = y + h * (0.2 + 0.25 * k)
        layers.append(Layer((x + w * 0.1, ly, x + w * rng.uniform(0.5, 0.9), ly + h * 0.08), (90, 90, 90)))


def gallery_scene(
    artwork: np.ndarray,
    frame: FrameStyle,
    rng: np.random.Generator,
    neighbour: Callable[[np.random.Generator], np.ndarray],
) -> Scene:
    """The artwork hung on a wall, with neighbours left and right drawn by ``neighbour(rng)``."""
    ah, aw = artwork.shape[:2]
    long_side = float(max(ah, aw))
    wall, floor = museum_look(rng)
    art_rect: Rect = (0.0, 0.0, float(aw), float(ah))
    frame_layers, frame_rect = _framed(art_rect, frame, long_side)
    layers: list[Layer] = []
    centre_y = (frame_rect[1] + frame_rect[3]) / 2
    left, right = frame_rect[0], frame_rect[2]
    for side in (-1, 1):  # neighbours: other works of the museum's styles
        img = neighbour(rng)
        nh = ah * rng.uniform(0.6, 1.3)
        nw = nh * img.shape[1] / img.shape[0]
        gap = long_side * rng.uniform(0.25, 0.8)
        ny0 = centre_y - nh / 2 + ah * rng.uniform(-0.15, 0.15)
        nx0 = right + gap if side > 0 else left - gap - nw
        n_frame = FrameStyle(float(rng.uniform(0, 0.06)), _FRAMES[int(rng.integers(len(_FRAMES)))], 0.0, False)
        n_layers, n_outer = _framed((nx0, ny0, nx0 + nw, ny0 + nh), n_frame, max(nw, nh))
        layers += n_layers + [Layer((nx0, ny0, nx0 + nw, ny0 + nh), image=img)]
        if side > 0:
            right = n_outer[2]
        else:
            left = n_outer[0]
    layers += frame_layers + [Layer(art_rect, image=artwork)]
    if rng.random() < 0.6:
        _plaque(layers, frame_rect, long_side, rng)
    floor_y = frame_rect[3] + ah * rng.uniform(0.3, 1.0)
    pad = long_side * 0.6
    bounds = (left - pad, frame_rect[1] - ah * 0.8, right + pad, floor_y + ah * 0.8)
    return Scene(wall, floor, floor_y, bounds, layers, art_rect, frame_rect, frame.glass)


def distractor_scene(kind: str, rng: np.random.Generator, unit: float) -> tuple[Scene, Rect]:
    """A scene with no artwork and the region a photo of it aims at. ``unit`` sets its scale."""
    if kind not in DISTRACTOR_KINDS:
        raise ValueError(f"unknown distractor kind {kind!r}; expected one of {DISTRACTOR_KINDS}")
    wall, floor = museum_look(rng)
    u = unit
    layers: list[Layer] = []
    floor_y = u * rng.uniform(0.8, 1.6)
    bounds: Rect = (-2.5 * u, -1.5 * u, 2.5 * u, floor_y + 1.5 * u)
    target: Rect = (-0.6 * u, -0.4 * u, 0.6 * u, 0.5 * u)
    if kind == "empty_frame":
        w, h = u * rng.uniform(0.4, 1.0), u * rng.uniform(0.4, 1.0)
        frame = FrameStyle(float(rng.uniform(0.03, 0.09)), _FRAMES[int(rng.integers(len(_FRAMES)))], 0.0, False)
        rect = (-w / 2, -h / 2, w / 2, h / 2)
        frame_layers, outer = _framed(rect, frame, max(w, h))
        inside = ((30, 30, 30), (200, 215, 225), wall, (150, 160, 150))[int(rng.integers(4))]
        layers += frame_layers + [Layer(rect, tuple(int(c) for c in inside))]
        target = (outer[0] - 0.2 * w, outer[1] - 0.2 * h, outer[2] + 0.2 * w, outer[3] + 0.2 * h)
    elif kind == "doorway":
        w, h = u * rng.uniform(0.5, 0.9), u * rng.uniform(0.9, 1.4)
        rect = (-w / 2, floor_y - h, w / 2, floor_y)
        layers.append(Layer((rect[0] - 0.06 * u, rect[1] - 0.06 * u, rect[2] + 0.06 * u, rect[3]),
                            tuple(int(c * 0.8) for c in wall)))
        far = tuple(int(c) for c in rng.integers(20, 120, 3))
        layers.append(Layer(rect, far))
        layers.append(Layer((rect[0], floor_y - h * 0.25, rect[2], floor_y), tuple(int(c * 0.7) for c in floor)))
        target = (rect[0] - 0.3 * w, rect[1] - 0.1 * h, rect[2] + 0.3 * w, floor_y + 0.1 * h)
    elif kind == "floor":
        target = (-0.6 * u, floor_y - 0.3 * u, 0.6 * u, floor_y + 0.6 * u)
        if rng.random() < 0.5:  # a bench
            bw = u * rng.uniform(0.5, 1.0)
            layers.append(Layer((-bw / 2, floor_y - 0.25 * u, bw / 2, floor_y - 0.2 * u), (40, 50, 60)))
            layers.append(Layer((-bw / 2 + 0.05 * u, floor_y - 0.2 * u, -bw / 2 + 0.09 * u, floor_y), (30, 30, 30)))
            layers.append(Layer((bw / 2 - 0.09 * u, floor_y - 0.2 * u, bw / 2 - 0.05 * u, floor_y), (30, 30, 30)))
    # fittings anywhere: a light switch, an exit sign, a fire extinguisher, a thermostat
    for _ in range(int(rng.integers(0, 4))):
        x, y = rng.uniform(-1.0, 1.0) * u, rng.uniform(-0.5, 0.6) * floor_y
        s = u * rng.uniform(0.03, 0.1)
        choice = int(rng.integers(4))
        if choice == 0:
            layers.append(Layer((x, y, x + s, y + s * 1.4), (245, 245, 245)))
        elif choice == 1:
            layers.append(Layer((x, y, x + 2.5 * s, y + s), (60, 160, 40)))
            layers.append(Layer((x + 0.3 * s, y + 0.35 * s, x + 2.2 * s, y + 0.65 * s), (240, 240, 240)))
        elif choice == 2:
            layers.append(Layer((x, floor_y - 4 * s, x + s, floor_y - 0.5 * s), (30, 30, 200)))
        else:
            _plaque(layers, (x - 0.3 * u, y, x - 0.3 * u, y + 0.2 * u), u, rng)
    return Scene(wall, floor, floor_y, bounds, layers), target

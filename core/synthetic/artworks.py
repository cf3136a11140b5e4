"""Procedural artworks: paintings, textures (textiles, papers), posters and glass cabinets.

Artworks come in style families: a family fixes a kind, a layout variant and a palette, and
several artworks of the museum share it. Colour statistics alone therefore do not tell two
artworks of a family apart; their compositions do. Every artwork is drawn once, at a canonical
resolution, from its own generator; photos of it are taken later (see ``camera``).

Images are BGR uint8, as OpenCV writes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

KINDS = ("painting", "texture", "poster", "cabinet")

VARIANTS: dict[str, tuple[str, ...]] = {
    "painting": ("landscape", "abstract", "still_life"),
    "texture": ("noise", "waves", "cells", "motif"),
    "poster": ("swiss", "image", "typographic"),
    "cabinet": ("ceramics", "curios", "bottles"),
}

# Aspect ratios (width / height) each kind is made in.
_ASPECTS: dict[str, tuple[float, ...]] = {
    "painting": (4 / 3, 3 / 4, 1.0, 16 / 9, 2 / 3, 5 / 4),
    "texture": (1.0, 4 / 3, 3 / 4, 3 / 2),
    "poster": (2 / 3, 3 / 4, 0.7),
    "cabinet": (3 / 4, 4 / 5, 4 / 3),
}

_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True, eq=False)
class Style:
    """What the artworks of one family share."""

    kind: str
    family: int
    variant: str
    palette: np.ndarray  # (n, 3) uint8 BGR
    knobs: dict[str, float] = field(default_factory=dict)


def make_style(kind: str, family: int, rng: np.random.Generator) -> Style:
    """Draw a style family of ``kind``: a layout variant, a palette and a few shared knobs."""
    if kind not in KINDS:
        raise ValueError(f"unknown artwork kind {kind!r}; expected one of {KINDS}")
    variant = str(rng.choice(VARIANTS[kind]))
    scheme = str(rng.choice(("analogous", "complementary", "triadic", "earth", "muted")))
    palette = make_palette(rng, scheme, 7)
    knobs = {
        "stroke_angle": float(rng.uniform(0, math.pi)),
        "stroke_density": float(rng.uniform(0.4, 1.4)),
        "stroke_length": float(rng.uniform(0.01, 0.04)),
        "font": float(rng.integers(len(_FONTS))),
        "frequency": float(rng.uniform(3, 10)),
        "warp": float(rng.uniform(0.5, 3.0)),
    }
    return Style(kind, family, variant, palette, knobs)


def make_palette(rng: np.random.Generator, scheme: str, n: int) -> np.ndarray:
    """``n`` BGR colours following a colour scheme around a random base hue."""
    h0 = rng.uniform(0, 180)
    if scheme == "analogous":
        hues = h0 + rng.uniform(-18, 18, n)
        sat, val = rng.uniform(90, 230, n), rng.uniform(60, 250, n)
    elif scheme == "complementary":
        hues = h0 + 90 * rng.integers(0, 2, n) + rng.uniform(-8, 8, n)
        sat, val = rng.uniform(80, 240, n), rng.uniform(50, 250, n)
    elif scheme == "triadic":
        hues = h0 + 60 * rng.integers(0, 3, n) + rng.uniform(-8, 8, n)
        sat, val = rng.uniform(100, 240, n), rng.uniform(70, 250, n)
    elif scheme == "earth":
        hues = rng.uniform(5, 30, n) + rng.normal(0, 4, n)
        sat, val = rng.uniform(40, 170, n), rng.uniform(40, 230, n)
    elif scheme == "muted":
        hues = h0 + rng.uniform(-30, 30, n)
        sat, val = rng.uniform(15, 90, n), rng.uniform(50, 240, n)
    else:
        raise ValueError(f"unknown colour scheme {scheme!r}")
    hsv = np.stack([np.mod(hues, 180), sat, val], axis=1).clip(0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2BGR)[0]


def jitter_palette(palette: np.ndarray, rng: np.random.Generator, amount: float = 1.0) -> np.ndarray:
    """The family palette as one artwork uses it: slightly shifted and reordered."""
    hsv = cv2.cvtColor(palette[None], cv2.COLOR_BGR2HSV)[0].astype(np.float32)
    n = len(palette)
    hsv[:, 0] = np.mod(hsv[:, 0] + amount * rng.normal(0, 4, n), 180)
    hsv[:, 1] = hsv[:, 1] * (1 + amount * rng.normal(0, 0.12, n))
    hsv[:, 2] = hsv[:, 2] * (1 + amount * rng.normal(0, 0.12, n))
    out = cv2.cvtColor(hsv.clip(0, 255).astype(np.uint8)[None], cv2.COLOR_HSV2BGR)[0]
    return out[rng.permutation(n)]


def artwork_aspect(kind: str, rng: np.random.Generator) -> float:
    return float(rng.choice(_ASPECTS[kind]))


def render_artwork(style: Style, rng: np.random.Generator, long_side: int, aspect: float | None = None) -> np.ndarray:
    """Draw one artwork of ``style`` with its long side ``long_side`` pixels."""
    if long_side < 16:
        raise ValueError(f"long_side must be >= 16 pixels, got {long_side}")
    if aspect is None:
        aspect = artwork_aspect(style.kind, rng)
    if not 0.2 <= aspect <= 5:
        raise ValueError(f"aspect must be in [0.2, 5], got {aspect}")
    w, h = (long_side, round(long_side / aspect)) if aspect >= 1 else (round(long_side * aspect), long_side)
    palette = jitter_palette(style.palette, rng)
    draw = {"painting": _painting, "texture": _texture, "poster": _poster, "cabinet": _cabinet}[style.kind]
    return draw(style, palette, rng, h, w)


# ----------------------------------------------------------------------------- helpers


def _c(colour: np.ndarray) -> tuple[int, int, int]:
    return (int(colour[0]), int(colour[1]), int(colour[2]))


def _shade(colour: np.ndarray, factor: float) -> tuple[int, int, int]:
    return _c(np.clip(colour.astype(np.float32) * factor, 0, 255))


def value_noise(rng: np.random.Generator, h: int, w: int, cells: float, octaves: int = 3) -> np.ndarray:
    """Smooth noise in [0, 1]: random grids upsampled and summed over octaves."""
    total = np.zeros((h, w), np.float32)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        c = cells * 2**o
        gh, gw = max(2, round(c * h / max(h, w)) + 1), max(2, round(c * w / max(h, w)) + 1)
        grid = rng.random((gh, gw), dtype=np.float32)
        total += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        norm += amp
        amp *= 0.5
    total /= norm
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / max(hi - lo, 1e-6)


def palette_map(field01: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Colour a scalar field in [0, 1] by a gradient through the palette's colours."""
    stops = np.linspace(0, 255, len(palette))
    lut = np.stack([np.interp(np.arange(256), stops, palette[:, c].astype(np.float64)) for c in range(3)], 1)
    idx = np.clip(field01 * 255, 0, 255).astype(np.uint8)
    return lut.astype(np.uint8)[idx]


def _vertical_gradient(h: int, w: int, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    col = top.astype(np.float32) * (1 - t) + bottom.astype(np.float32) * t
    return np.broadcast_to(col, (h, w, 3)).astype(np.uint8)


def _grain(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Canvas or paper grain: a fine multiplicative texture."""
    h, w = img.shape[:2]
    small = rng.normal(0, strength, (max(2, h // 2), max(2, w // 2))).astype(np.float32)
    g = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(img.astype(np.float32) * (1 + g[:, :, None]), 0, 255).astype(np.uint8)


def _strokes(img: np.ndarray, style: Style, palette: np.ndarray, rng: np.random.Generator, density: float) -> None:
    """Brush-like strokes that follow the picture's own colours, in place."""
    h, w = img.shape[:2]
    n = int(density * style.knobs["stroke_density"] * h * w / 700)
    if n == 0:
        return
    L = style.knobs["stroke_length"] * max(h, w)
    xs, ys = rng.integers(0, w, n), rng.integers(0, h, n)
    angles = style.knobs["stroke_angle"] + rng.normal(0, 0.35, n)
    lengths = L * rng.uniform(0.5, 1.5, n)
    thick = np.maximum(1, (L * rng.uniform(0.12, 0.3, n))).astype(int)
    jitter = rng.normal(0, 7, (n, 3)) + rng.normal(0, 6, (n, 1))
    use_palette = rng.random(n) < 0.02
    pal_idx = rng.integers(0, len(palette), n)
    for i in range(n):
        x, y = int(xs[i]), int(ys[i])
        base = palette[pal_idx[i]] if use_palette[i] else img[y, x]
        colour = _c(np.clip(base.astype(np.float64) + jitter[i], 0, 255))
        dx, dy = math.cos(angles[i]) * lengths[i], math.sin(angles[i]) * lengths[i]
        cv2.line(img, (x, y), (int(x + dx), int(y + dy)), colour, int(thick[i]), cv2.LINE_AA)


def _random_walk_ridge(rng: np.random.Generator, w: int, base: float, amplitude: float) -> np.ndarray:
    n = 12
    pts = np.cumsum(rng.normal(0, 1, n))
    pts = (pts - pts.mean()) / max(np.abs(pts).max(), 1e-6)
    ys = base + amplitude * np.interp(np.linspace(0, n - 1, 64), np.arange(n), pts)
    xs = np.linspace(0, w, 64)
    return np.stack([xs, ys], 1)


def _glyph_text(rng: np.random.Generator, length: int) -> str:
    words = []
    while sum(len(wd) + 1 for wd in words) < length:
        words.append("".join(rng.choice(list(_LETTERS), int(rng.integers(2, 8)))))
    return " ".join(words)[:length]


def _put_text_fit(img: np.ndarray, text: str, x: int, y: int, width: int, height: int,
                  font: int, colour: tuple[int, int, int], thickness_frac: float = 0.08) -> None:
    """Write ``text`` scaled to fit a ``width`` x ``height`` box whose top-left is (x, y)."""
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 1)
    scale = min(width / max(tw, 1), height / max(th, 1))
    thickness = max(1, int(th * scale * thickness_frac))
    cv2.putText(img, text, (x, y + int(th * scale)), font, scale, colour, thickness, cv2.LINE_AA)


# ----------------------------------------------------------------------------- paintings


def _painting(style: Style, pal: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    if style.variant == "landscape":
        img = _landscape(pal, rng, h, w)
    elif style.variant == "abstract":
        img = _abstract(pal, rng, h, w)
    else:
        img = _still_life(pal, rng, h, w)
    _strokes(img, style, pal, rng, density=1.0)
    return _grain(img, rng, 0.035)


def _landscape(pal: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    horizon = int(h * rng.uniform(0.3, 0.7))
    img = np.empty((h, w, 3), np.uint8)
    img[:horizon] = _vertical_gradient(horizon, w, pal[0], pal[1])
    img[horizon:] = _vertical_gradient(h - horizon, w, pal[2], pal[3])
    if rng.random() < 0.7:  # sun or moon
        r = int(min(h, w) * rng.uniform(0.04, 0.1))
        cv2.circle(img, (int(rng.uniform(0.1, 0.9) * w), int(rng.uniform(0.15, 0.8) * horizon)), r,
                   _shade(pal[4], 1.3), -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(2, 6))):  # clouds
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0.05, 0.8) * horizon))
        axes = (int(w * rng.uniform(0.05, 0.18)), int(h * rng.uniform(0.015, 0.05)))
        cv2.ellipse(img, centre, axes, 0, 0, 360, _shade(pal[1], rng.uniform(1.05, 1.3)), -1, cv2.LINE_AA)
    n_hills = int(rng.integers(1, 4))
    for k in range(n_hills):  # far to near, darker as they come closer
        ridge = _random_walk_ridge(rng, w, horizon - h * rng.uniform(0.02, 0.15) + k * h * 0.06,
                                   h * rng.uniform(0.03, 0.15))
        poly = np.concatenate([ridge, [[w, h], [0, h]]]).astype(np.int32)
        cv2.fillPoly(img, [poly], _shade(pal[(5 + k) % len(pal)], 0.9 - 0.15 * k), cv2.LINE_AA)
    if rng.random() < 0.5:  # water
        top = int(horizon + (h - horizon) * rng.uniform(0.3, 0.6))
        img[top:] = _vertical_gradient(h - top, w, pal[1], pal[0])
        for _ in range(int(rng.integers(10, 40))):
            y = int(rng.uniform(top, h))
            x = int(rng.uniform(0, w))
            cv2.line(img, (x, y), (x + int(w * rng.uniform(0.02, 0.1)), y), _shade(pal[1], 1.2), 2, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 8))):  # trees
        x = int(rng.uniform(0, w))
        base = int(rng.uniform(horizon, h))
        th = int(h * rng.uniform(0.08, 0.3))
        cv2.line(img, (x, base), (x, base - th), _shade(pal[2], 0.4), max(2, th // 14), cv2.LINE_AA)
        cv2.ellipse(img, (x, base - th), (int(th * rng.uniform(0.25, 0.5)), int(th * 0.45)), 0, 0, 360,
                    _shade(pal[int(rng.integers(len(pal)))], 0.6), -1, cv2.LINE_AA)
    if rng.random() < 0.5:  # a house or a tower
        bw, bh = int(w * rng.uniform(0.05, 0.15)), int(h * rng.uniform(0.06, 0.2))
        x, y = int(rng.uniform(0, w - bw)), int(rng.uniform(horizon, h * 0.9))
        cv2.rectangle(img, (x, y - bh), (x + bw, y), _shade(pal[4], 0.9), -1)
        roof = np.array([[x - bw // 8, y - bh], [x + bw + bw // 8, y - bh], [x + bw // 2, y - bh - bh // 2]], np.int32)
        cv2.fillPoly(img, [roof], _shade(pal[3], 0.6), cv2.LINE_AA)
    return img


def _abstract(pal: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = pal[0]
    if rng.random() < 0.5:
        img[:] = _vertical_gradient(h, w, pal[0], pal[1])
    s = max(h, w)
    for _ in range(int(rng.integers(6, 16))):
        colour = _c(pal[int(rng.integers(len(pal)))])
        shape = rng.integers(4)
        cx, cy = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        size = int(s * rng.uniform(0.05, 0.35))
        if shape == 0:
            cv2.circle(img, (cx, cy), size // 2, colour, -1 if rng.random() < 0.7 else max(2, s // 80), cv2.LINE_AA)
        elif shape == 1:
            ang = rng.uniform(0, 180)
            box = cv2.boxPoints(((cx, cy), (size, size * rng.uniform(0.2, 1.0)), ang)).astype(np.int32)
            cv2.fillPoly(img, [box], colour, cv2.LINE_AA)
        elif shape == 2:
            pts = (np.array([cx, cy]) + rng.uniform(-size, size, (3, 2))).astype(np.int32)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
        else:
            p2 = (int(cx + rng.uniform(-1, 1) * size * 2), int(cy + rng.uniform(-1, 1) * size * 2))
            cv2.line(img, (cx, cy), p2, colour, max(2, int(s * rng.uniform(0.003, 0.02))), cv2.LINE_AA)
    return img


def _still_life(pal: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    table = int(h * rng.uniform(0.55, 0.8))
    img = np.empty((h, w, 3), np.uint8)
    img[:table] = _vertical_gradient(table, w, _shade_arr(pal[0], 0.7), pal[0])
    img[table:] = _vertical_gradient(h - table, w, pal[1], _shade_arr(pal[1], 0.6))
    if rng.random() < 0.5:  # drapery
        pts = np.array([[0, 0], [int(w * rng.uniform(0.2, 0.5)), 0], [int(w * rng.uniform(0.1, 0.3)), table]], np.int32)
        cv2.fillPoly(img, [pts], _shade(pal[6], 0.8), cv2.LINE_AA)
    s = min(h, w)
    for _ in range(int(rng.integers(2, 7))):
        colour = pal[int(rng.integers(2, len(pal)))]
        cx = int(rng.uniform(0.1, 0.9) * w)
        r = int(s * rng.uniform(0.05, 0.16))
        base = table + int(rng.uniform(0, 0.15) * (h - table))
        if rng.random() < 0.5:  # fruit
            cv2.circle(img, (cx, base - r), r, _c(colour), -1, cv2.LINE_AA)
            cv2.circle(img, (cx - r // 3, base - r - r // 3), max(1, r // 4), _shade(colour, 1.4), -1, cv2.LINE_AA)
        else:  # vessel
            vh = int(r * rng.uniform(2, 4))
            cv2.ellipse(img, (cx, base - vh // 3), (r, vh // 3), 0, 0, 360, _c(colour), -1, cv2.LINE_AA)
            cv2.rectangle(img, (cx - r // 3, base - vh), (cx + r // 3, base - vh // 3), _shade(colour, 0.8), -1)
            cv2.ellipse(img, (cx, base - vh), (r // 2, max(1, r // 6)), 0, 0, 360, _shade(colour, 0.6), -1, cv2.LINE_AA)
    return img


def _contrasting(pal: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The palette colour that stands out most from ``background`` in brightness."""
    luma = pal.astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)
    bg = float(background.astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32))
    best = pal[int(np.argmax(np.abs(luma - bg)))]
    if abs(float(best.astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)) - bg) < 60:
        return np.array([20, 20, 20] if bg > 128 else [235, 235, 235], np.uint8)
    return best


def _shade_arr(colour: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(colour.astype(np.float32) * factor, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- textures


def _texture(style: Style, pal: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    freq = style.knobs["frequency"] * rng.uniform(0.7, 1.4)
    if style.variant == "noise":
        f = value_noise(rng, h, w, freq, octaves=4)
        if rng.random() < 0.5:
            f = np.abs(f - 0.5) * 2  # turbulence: veins
        img = palette_map(f, pal)
    elif style.variant == "waves":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
        warp = value_noise(rng, h, w, 3, octaves=2) * style.knobs["warp"] * rng.uniform(0.6, 1.5)
        theta = rng.uniform(0, math.pi)
        phase = 2 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta)) + 2 * math.pi * warp
        img = palette_map(0.5 + 0.5 * np.sin(phase), pal)
    elif style.variant == "cells":
        n = int(freq**2 * rng.uniform(1, 3))
        seeds = np.full((h, w), 255, np.uint8)
        ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
        seeds[ys, xs] = 0
        dist, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP)
        colours = pal[rng.integers(0, len(pal), labels.max() + 1)]
        img = colours[labels]
        edge = np.clip(dist / (0.5 * max(h, w) / max(freq, 1)), 0, 1)
        img = (img.astype(np.float32) * (0.55 + 0.45 * np.sqrt(edge))[:, :, None]).astype(np.uint8)
    else:
        img = _motif(pal, rng, h, w, freq)
    return _grain(img, rng, 0.05)


def _motif(pal: np.ndarray, rng: np.random.Generator, h: int, w: int, freq: float) -> np.ndarray:
    """A repeating textile motif on a tile, with a drifting offset per row."""
    t = max(8, int(max(h, w) / (freq * rng.uniform(0.8, 1.6))))
    tile = np.empty((t, t, 3), np.uint8)
    tile[:] = pal[0]
    c1, c2 = _c(pal[1]), _c(pal[2])
    shape = rng.integers(4)
    m = t // 2
    if shape == 0:
        cv2.circle(tile, (m, m), int(t * rng.uniform(0.2, 0.45)), c1, -1, cv2.LINE_AA)
        cv2.circle(tile, (m, m), int(t * rng.uniform(0.05, 0.18)), c2, -1, cv2.LINE_AA)
    elif shape == 1:
        r = int(t * rng.uniform(0.25, 0.48))
        cv2.fillPoly(tile, [np.array([[m, m - r], [m + r, m], [m, m + r], [m - r, m]], np.int32)], c1, cv2.LINE_AA)
        cv2.line(tile, (0, 0), (t, t), c2, max(1, t // 16), cv2.LINE_AA)
    elif shape == 2:
        k = max(1, int(t * rng.uniform(0.08, 0.2)))
        tile[m - k:m + k] = pal[1]
        tile[:, m - k:m + k] = pal[2]
    else:
        for a in range(0, 360, int(rng.choice([45, 60, 72, 90]))):
            p = (int(m + 0.42 * t * math.cos(math.radians(a))), int(m + 0.42 * t * math.sin(math.radians(a))))
            cv2.line(tile, (m, m), p, c1, max(1, t // 12), cv2.LINE_AA)
        cv2.circle(tile, (m, m), max(1, t // 8), c2, -1, cv2.LINE_AA)
    reps = (h // t + 2, w // t + 2, 1)
    big = np.tile(tile, reps)
    shift = int(rng.integers(0, t))
    big[t::2] = np.roll(big[t::2], shift, axis=1) if rng.random() < 0.6 else big[t::2]
    img = np.ascontiguousarray(big[:h, :w])
    tone = value_noise(rng, h, w, 4, octaves=2)
    return (img.astype(np.float32) * (0.75 + 0.35 * tone[:, :, None])).clip(0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- posters


def _poster(style: Style, pal: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = pal[0]
    font = _FONTS[int(style.knobs["font"])]
    ink = _c(_contrasting(pal, pal[0]))
    margin = int(w * rng.uniform(0.04, 0.1))
    inner = w - 2 * margin
    if style.variant == "swiss":
        for _ in range(int(rng.integers(3, 9))):  # grid blocks
            bw, bh = int(w * rng.uniform(0.1, 0.6)), int(h * rng.uniform(0.05, 0.35))
            x, y = int(rng.uniform(0, w - bw)), int(rng.uniform(0, h - bh))
            cv2.rectangle(img, (x, y), (x + bw, y + bh), _c(pal[int(rng.integers(2, len(pal)))]), -1)
        title_y = int(h * rng.uniform(0.05, 0.6))
    elif style.variant == "image":
        top = int(h * rng.uniform(0.05, 0.35))
        ih = int(h * rng.uniform(0.35, 0.55))
        sub = Style("painting", -1, "abstract" if rng.random() < 0.5 else "landscape", pal, style.knobs)
        sub_img = _painting(sub, pal, rng, ih, inner)
        img[top:top + ih, margin:margin + inner] = sub_img
        title_y = top + ih + int(h * 0.03) if rng.random() < 0.6 else int(h * 0.02)
    else:
        title_y = int(h * rng.uniform(0.04, 0.15))
        cv2.rectangle(img, (0, int(h * rng.uniform(0.8, 0.92))), (w, h), _c(pal[2]), -1)
        for _ in range(int(rng.integers(1, 4))):  # a few large single letters as the image
            size = int(h * rng.uniform(0.15, 0.35))
            x, y = int(rng.uniform(0, w - size * 0.6)), int(rng.uniform(0.25, 0.6) * h)
            _put_text_fit(img, str(rng.choice(list(_LETTERS))), x, y, size, size, font,
                          _c(pal[int(rng.integers(2, len(pal)))]), 0.2)
    # title: one to three lines of big letters
    y = title_y
    for _ in range(int(rng.integers(1, 4))):
        lh = int(h * rng.uniform(0.04, 0.09))
        _put_text_fit(img, _glyph_text(rng, int(rng.integers(4, 12))), margin, y, inner, lh, font, ink, 0.12)
        y += int(lh * 1.35)
    # body text: lines of small glyphs, in the palette colours that can be read on the background
    luma = pal.astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)
    readable = pal[np.abs(luma - luma[0]) > 60]
    body_inks = readable if len(readable) else np.array([ink], np.uint8)
    lines = int(rng.integers(4, 14))
    lh = max(4, int(h * rng.uniform(0.012, 0.022)))
    y = int(y + h * 0.03) if y < h * 0.7 else int(h * rng.uniform(0.05, 0.2))
    for _ in range(lines):
        if y + lh > h - margin:
            break
        width = int(inner * rng.uniform(0.5, 1.0))
        _put_text_fit(img, _glyph_text(rng, int(rng.integers(12, 40))), margin, y, width, lh, font,
                      _c(body_inks[int(rng.integers(len(body_inks)))]), 0.1)
        y += int(lh * 1.8)
    for _ in range(int(rng.integers(0, 4))):  # rules
        yy = int(rng.uniform(0, h))
        cv2.line(img, (margin, yy), (w - margin, yy), ink, max(1, h // 300))
    return _grain(img, rng, 0.02)


# ----------------------------------------------------------------------------- cabinets


def _cabinet(style: Style, pal: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Small objects on shelves, seen through the cabinet's glass front (glass is the camera's)."""
    wood = np.array([int(rng.uniform(20, 70)), int(rng.uniform(40, 100)), int(rng.uniform(70, 140))], np.uint8)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = wood
    border = max(4, int(min(h, w) * rng.uniform(0.04, 0.08)))
    back = pal[0] if rng.random() < 0.5 else _shade_arr(pal[0], 0.5)
    img[border:h - border, border:w - border] = _vertical_gradient(h - 2 * border, w - 2 * border,
                                                                   _shade_arr(back, 1.1), _shade_arr(back, 0.7))
    n_shelves = int(rng.integers(2, 5))
    inner_h = h - 2 * border
    shelf_t = max(3, inner_h // 60)
    bottoms = [border + int(inner_h * (k + 1) / n_shelves) - shelf_t for k in range(n_shelves)]
    tops = [border] + [b + shelf_t for b in bottoms[:-1]]
    for top, bottom in zip(tops, bottoms, strict=True):
        cv2.rectangle(img, (border, bottom), (w - border, bottom + shelf_t), _shade(wood, 1.3), -1)
        bay = bottom - top
        x = border + int(rng.uniform(0.02, 0.1) * w)
        while x < w - border - bay * 0.2:
            size = int(bay * rng.uniform(0.35, 0.85))
            ow = int(size * rng.uniform(0.3, 0.8))
            if x + ow > w - border:
                break
            colour = pal[int(rng.integers(1, len(pal)))]
            _cabinet_object(img, style.variant, rng, x, bottom, ow, size, colour)
            x += ow + int(bay * rng.uniform(0.05, 0.4))
    return _grain(img, rng, 0.02)


def _cabinet_object(img: np.ndarray, variant: str, rng: np.random.Generator, x: int, base: int,
                    ow: int, oh: int, colour: np.ndarray) -> None:
    cx = x + ow // 2
    hi, lo = _shade(colour, 1.45), _shade(colour, 0.6)
    kind = int(rng.integers(3))
    if variant == "ceramics":  # vases, bowls, plates
        if kind == 0:
            cv2.ellipse(img, (cx, base - oh // 3), (ow // 2, oh // 3), 0, 0, 360, _c(colour), -1, cv2.LINE_AA)
            cv2.rectangle(img, (cx - ow // 6, base - oh), (cx + ow // 6, base - oh // 2), _c(colour), -1)
            cv2.ellipse(img, (cx, base - oh), (ow // 4, max(1, oh // 16)), 0, 0, 360, lo, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.ellipse(img, (cx, base - oh // 4), (ow // 2, oh // 4), 0, 0, 180, _c(colour), -1, cv2.LINE_AA)
            cv2.ellipse(img, (cx, base - oh // 4), (ow // 2, max(1, oh // 14)), 0, 0, 360, lo, -1, cv2.LINE_AA)
        else:
            r = min(ow, oh) // 2
            cv2.circle(img, (cx, base - r), r, _c(colour), -1, cv2.LINE_AA)
            cv2.circle(img, (cx, base - r), int(r * 0.7), lo, max(1, r // 10), cv2.LINE_AA)
    elif variant == "curios":  # figurines, boxes, shells
        if kind == 0:
            r = max(2, ow // 3)
            cv2.ellipse(img, (cx, base - oh // 3), (ow // 2, oh // 3), 0, 0, 360, _c(colour), -1, cv2.LINE_AA)
            cv2.circle(img, (cx, base - oh + r), r, _c(colour), -1, cv2.LINE_AA)
        elif kind == 1:
            bh = oh // 2
            cv2.rectangle(img, (x, base - bh), (x + ow, base), _c(colour), -1)
            cv2.rectangle(img, (x - ow // 12, base - bh - bh // 5), (x + ow + ow // 12, base - bh), lo, -1)
        else:
            pts = np.array([[x, base], [x + ow, base], [cx + ow // 4, base - oh * 2 // 3],
                            [cx - ow // 3, base - oh // 2]], np.int32)
            cv2.fillPoly(img, [pts], _c(colour), cv2.LINE_AA)
    else:  # bottles, flasks, glasses
        if kind == 0:
            cv2.rectangle(img, (x, base - oh * 2 // 3), (x + ow, base), _c(colour), -1)
            cv2.rectangle(img, (cx - ow // 6, base - oh), (cx + ow // 6, base - oh * 2 // 3), _c(colour), -1)
        elif kind == 1:
            r = ow // 2
            cv2.circle(img, (cx, base - r), r, _c(colour), -1, cv2.LINE_AA)
            cv2.rectangle(img, (cx - ow // 8, base - oh), (cx + ow // 8, base - r), _c(colour), -1)
        else:
            pts = np.array([[x, base - oh], [x + ow, base - oh], [cx + ow // 5, base], [cx - ow // 5, base]], np.int32)
            cv2.fillPoly(img, [pts], _c(colour), cv2.LINE_AA)
    # a highlight and a shadow side give the objects volume
    cv2.line(img, (cx - ow // 4, base - oh * 3 // 4), (cx - ow // 4, base - oh // 5), hi, max(1, ow // 10), cv2.LINE_AA)
    cv2.line(img, (cx + ow // 3, base - oh // 2), (cx + ow // 3, base - 2), lo, max(1, ow // 14), cv2.LINE_AA)

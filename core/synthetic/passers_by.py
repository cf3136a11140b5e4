"""Visitors crossing between a walk's camera and the wall: when each one passes, and the mask of
the picture they hide at an instant."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from muselens.core.synthetic import seeding
from muselens.core.synthetic.walk_camera import STEP_HZ
from muselens.core.synthetic.walk_plan import WalkPlan


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
    rng = seeding.rng_for(seed, seeding.WALK, seeding.WALK_PASSERS)
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
    qw, qh = quarter_size(out_w, out_h)
    sx, sy = qw / out_w, qh / out_h
    height = person.height * out_h
    top = person.top * out_h + 0.01 * out_h * math.sin(2 * np.pi * STEP_HZ * t + person.step_phase)
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


def quarter_size(out_w: int, out_h: int) -> tuple[int, int]:
    return max(2, (out_w + 3) // 4), max(2, (out_h + 3) // 4)

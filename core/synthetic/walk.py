"""A seeded visitor's walk along a gallery wall: a handheld video with per-frame ground truth.

The museum's artworks, drawn exactly as ``make_museum`` draws them, hang in their frames on one
long wall with gaps of bare wall, one long bare stretch, a door under a fire-exit sign and a
bench. A handheld camera walks along it: it pans at walking speed with a bob and a wobble, looks
a little ahead, stops in front of some artworks and steps closer, and passers-by cross the view.
The picture then goes through motion blur, vignetting, auto-exposure, white balance, sensor
noise and JPEG.

The parts, one module each: the wall (:mod:`~muselens.core.synthetic.gallery_wall`), the
camera's path (:mod:`~muselens.core.synthetic.walk_camera`), the plan that fits the walk to its
time (:mod:`~muselens.core.synthetic.walk_plan`), the passers-by
(:mod:`~muselens.core.synthetic.passers_by`), the picture (:mod:`~muselens.core.synthetic.walk_render`)
and the ground truth (:mod:`~muselens.core.synthetic.walk_truth`: which artwork is in view, how much
of each shows, whether a passer-by hides one, computed from the same geometry as the pixels).
Every frame renders only the wall region it sees, at the resolution it needs. Every random number
comes from the walk's seed; frames are byte-identical for a seed.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from muselens.core import checks
from muselens.core.data.images import encode_jpeg
from muselens.core.synthetic import seeding
from muselens.core.synthetic.camera import project
from muselens.core.synthetic.gallery_wall import build_wall
from muselens.core.synthetic.museum import (GENERATOR, GENERATOR_VERSION, InstancePlan, MuseumPlan, _opencv_threads,
                                            draw_artwork, plan_museum)
from muselens.core.synthetic.passers_by import PasserBy, passer_mask, schedule_passers
from muselens.core.synthetic.scenes import FrameStyle, Rect
from muselens.core.synthetic.walk_camera import homography
from muselens.core.synthetic.walk_plan import WalkPlan, _TooShort, plan_walk
from muselens.core.synthetic.walk_render import Exposure, make_exposure, motion_blur, render_view
from muselens.core.synthetic.walk_truth import MIN_CENTRE_COVERAGE, MIN_HIDDEN_SHARE, frame_truth

# The name in every walk.json: an identifier kept as first written (see GENERATOR), not a module path.
WALK_GENERATOR = "muselens.runtime.data.synthetic.walk"
# Bump when a change to the walk's modules changes the bytes a seed produces.
WALK_VERSION = 1

JPEG_QUALITY = 85
_CODECS = (("mp4v", "walk.mp4"), ("MJPG", "walk.avi"))  # tried in order
_OWN_ENTRIES = ("frames", "walk.mp4", "walk.avi", "walk.json")
_COMFY_PAUSE_S = 1.5  # when the wall is filled automatically, a pause is at least this long


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
    order = seeding.rng_for(seed, seeding.WALK, seeding.WALK_ORDER).permutation(len(plan.instances))
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
    rng = seeding.rng_for(seed, seeding.WALK, seeding.WALK_FRAME, i)
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

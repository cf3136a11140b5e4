"""Write a synthetic museum: plan it, draw its artworks, photograph them, in parallel.

The plan (which artwork gets which kind and style family, its title) is made once from the
seed. Each artwork is then drawn from its own generator and photographed, each photo from a
generator keyed by (instance, split, index), so the bytes written do not depend on the number
of workers or on the order in which they finish.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from muselens.core.synthetic import seeding
from muselens.core.synthetic.artworks import KINDS, Style, artwork_aspect, make_style, render_artwork
from muselens.core.synthetic.camera import (
    QUERY,
    REFERENCE,
    Conditions,
    look_at,
    output_shape,
    pick_target,
    project,
    sample_view,
    shoot,
)
from muselens.core.data.images import encode_jpeg
from muselens.core import checks
from muselens.core.synthetic.effects import develop
from muselens.core.synthetic.scenes import (
    DISTRACTOR_KINDS,
    FrameStyle,
    distractor_scene,
    gallery_scene,
    sample_frame,
)

# The generator's name in every museum.json: an identifier, not a module path (the code moved to
# muselens.core.synthetic); kept as first written so museums already on disk are still recognised.
GENERATOR = "muselens.runtime.data.synthetic"
# Bump when a change to the drawing code changes the bytes a seed produces.
GENERATOR_VERSION = 1
INSTANCES_PER_FAMILY = 5
_OWN_ENTRIES = ("references", "queries", "distractors", "instances.csv", "museum.json")
_DISTRACTOR_CHUNK = 8

_TITLE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "painting": (("Evening", "Quiet", "Blue", "Northern", "Late", "Golden", "Distant", "Red"),
                 ("Harbour", "Orchard", "Study", "Composition", "Valley", "Still Life", "Garden", "Shore")),
    "texture": (("Woven", "Printed", "Marbled", "Dyed", "Embroidered", "Glazed"),
                ("Silk", "Wallpaper", "Tapestry", "Endpaper", "Cotton", "Tile Panel")),
    "poster": (("Exhibition", "Festival", "Concert", "Opening", "Travel", "Theatre"),
               ("Poster", "Bill", "Announcement", "Programme", "Placard")),
    "cabinet": (("Cabinet of", "Vitrine of", "Case of", "Shelves of"),
                ("Ceramics", "Curiosities", "Glassware", "Figurines", "Apothecary Jars")),
}


@dataclass(frozen=True)
class InstancePlan:
    index: int
    id: str
    kind: str
    family: int
    title: str


@dataclass(frozen=True, eq=False)
class MuseumPlan:
    """Everything a worker needs to render any image of the museum."""

    seed: int
    size: int
    references: int
    queries: int
    distractors: int
    canonical: int  # long side of every artwork, in pixels
    styles: tuple[Style, ...]
    instances: tuple[InstancePlan, ...]

    @property
    def image_count(self) -> int:
        return len(self.instances) * (self.references + self.queries) + self.distractors


def canonical_side(size: int) -> int:
    """Artworks are drawn large enough for 30 % detail views to stay sharp, within reason."""
    return int(min(1024, max(256, round(1.6 * size))))


def plan_museum(*, instances: int, references: int, queries: int, distractors: int, seed: int,
                size: int) -> MuseumPlan:
    _validate(instances=instances, references=references, queries=queries, distractors=distractors,
              seed=seed, size=size, workers=1)
    rng = seeding.rng_for(seed, seeding.PLAN)
    n_families = max(1, math.ceil(instances / INSTANCES_PER_FAMILY))
    first_kind = int(rng.integers(len(KINDS)))
    styles = tuple(
        make_style(KINDS[(first_kind + f) % len(KINDS)], f, seeding.rng_for(seed, seeding.FAMILY, f))
        for f in range(n_families)
    )
    families = rng.permutation(instances) % n_families
    width = max(3, len(str(instances - 1)))
    plans = []
    for i in range(instances):
        style = styles[int(families[i])]
        title_rng = seeding.rng_for(seed, seeding.ARTWORK, i, 1)
        first, second = _TITLE_WORDS[style.kind]
        title = f"{title_rng.choice(first)} {title_rng.choice(second)}"
        if title_rng.random() < 0.4:
            title += f" No. {int(title_rng.integers(1, 20))}"
        plans.append(InstancePlan(i, f"a{i:0{width}d}", style.kind, style.family, title))
    return MuseumPlan(seed, size, references, queries, distractors, canonical_side(size), styles, tuple(plans))


# ----------------------------------------------------------------------------- drawing


def draw_artwork(plan: MuseumPlan, inst: InstancePlan) -> tuple[np.ndarray, FrameStyle]:
    """The artwork's canonical image and how it is framed; both fixed by the seed."""
    rng = seeding.rng_for(plan.seed, seeding.ARTWORK, inst.index, 0)
    style = plan.styles[inst.family]
    image = render_artwork(style, rng, plan.canonical, artwork_aspect(style.kind, rng))
    return image, sample_frame(inst.kind, rng)


NEIGHBOURS_PER_FAMILY = 4


@functools.lru_cache(maxsize=256)
def _neighbour(plan: MuseumPlan, family: int, variant: int) -> np.ndarray:
    side = max(64, plan.canonical // 3)
    rng = seeding.rng_for(plan.seed, seeding.NEIGHBOUR, family, variant)
    image = render_artwork(plan.styles[family], rng, side)
    image.flags.writeable = False  # shared by every photo that shows it
    return image


def _neighbour_drawer(plan: MuseumPlan) -> Callable[[np.random.Generator], np.ndarray]:
    """Neighbouring works: other compositions in the museum's own styles, drawn small once."""

    def draw(rng: np.random.Generator) -> np.ndarray:
        family = int(rng.integers(len(plan.styles)))
        return _neighbour(plan, family, int(rng.integers(NEIGHBOURS_PER_FAMILY)))

    return draw


def photograph_artwork(plan: MuseumPlan, artwork: np.ndarray, frame: FrameStyle, rng: np.random.Generator,
                       cond: Conditions, global_view: bool) -> bytes:
    """One visitor's JPEG of the artwork on its wall."""
    out_w, out_h = output_shape(rng, plan.size)
    scene = gallery_scene(artwork, frame, rng, _neighbour_drawer(plan))
    target = pick_target(scene, rng, global_view, out_w / out_h, cond.min_coverage)
    view = sample_view(rng, cond)
    fill = rng.uniform(0.65, 1.0) if global_view else rng.uniform(0.95, 1.15)
    offset = (float(rng.uniform(-0.8, 0.8)), float(rng.uniform(-0.8, 0.8)))
    H = look_at(target, out_w, out_h, **view, fill=fill, offset=offset, cover=not global_view)
    img = shoot(scene, H, out_w, out_h)
    if scene.artwork is None:
        raise RuntimeError("gallery_scene returned a scene without the artwork")
    x0, y0, x1, y1 = scene.artwork
    quad = project(H, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64))
    occluders = int(rng.random() < cond.p_occluder) + int(rng.random() < cond.p_occluder / 4)
    img = develop(img, rng, cond, quad=quad, glass_strength=float(rng.uniform(0.3, 1.0)) if scene.glass else 0.0,
                  occluders=occluders, occluder_size=(0.3, 0.85))
    return encode_jpeg(img, int(rng.integers(cond.jpeg[0], cond.jpeg[1] + 1)), order="BGR")


def photograph_distractor(plan: MuseumPlan, rng: np.random.Generator) -> bytes:
    """A photo of no artwork: bare walls, empty frames, floors, doorways, crowds."""
    kind = DISTRACTOR_KINDS[int(rng.integers(len(DISTRACTOR_KINDS)))]
    out_w, out_h = output_shape(rng, plan.size)
    scene, target = distractor_scene(kind, rng, float(plan.canonical))
    view = sample_view(rng, QUERY)
    offset = (float(rng.uniform(-0.8, 0.8)), float(rng.uniform(-0.8, 0.8)))
    H = look_at(target, out_w, out_h, **view, fill=float(rng.uniform(0.6, 1.0)), offset=offset, cover=False)
    img = shoot(scene, H, out_w, out_h)
    crowd = kind == "visitors"
    occluders = int(rng.integers(1, 4)) if crowd else int(rng.random() < QUERY.p_occluder)
    img = develop(img, rng, QUERY, quad=None, glass_strength=0.0, occluders=occluders,
                  occluder_size=(0.6, 1.3) if crowd else (0.3, 0.85))
    return encode_jpeg(img, int(rng.integers(QUERY.jpeg[0], QUERY.jpeg[1] + 1)), order="BGR")


def _name(prefix: str, k: int, n: int) -> str:
    return f"{prefix}{k:0{max(2, len(str(n - 1)))}d}.jpg"


def wants_global_view(split: str, k: int, rng: np.random.Generator, cond: Conditions) -> bool:
    """The first reference always shows the whole work; other photos mix whole and detail views."""
    draw = bool(rng.random() < cond.global_fraction)  # drawn always, so the stream does not depend on k
    return (split == "references" and k == 0) or draw


def render_instance(plan: MuseumPlan, out: Path, index: int) -> int:
    """Write every photo of one artwork; returns how many."""
    inst = plan.instances[index]
    artwork, frame = draw_artwork(plan, inst)
    written = 0
    for split, split_key, count, cond in (("references", seeding.REFERENCE_SPLIT, plan.references, REFERENCE),
                                          ("queries", seeding.QUERY_SPLIT, plan.queries, QUERY)):
        folder = out / split / inst.id
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            rng = seeding.rng_for(plan.seed, seeding.PHOTO, index, split_key, k)
            data = photograph_artwork(plan, artwork, frame, rng, cond, wants_global_view(split, k, rng, cond))
            (folder / _name(f"{inst.id}_{split[0]}", k, count)).write_bytes(data)
            written += 1
    return written


def render_distractors(plan: MuseumPlan, out: Path, start: int, stop: int) -> int:
    folder = out / "distractors"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(start, stop):
        data = photograph_distractor(plan, seeding.rng_for(plan.seed, seeding.DISTRACTOR, k))
        (folder / _name("d", k, plan.distractors)).write_bytes(data)
    return stop - start


# ----------------------------------------------------------------------------- workers

Task = tuple[str, int, int]
_WORKER_STATE: dict[str, object] = {}


def _tasks(plan: MuseumPlan) -> list[Task]:
    tasks: list[Task] = [("instance", i, i + 1) for i in range(len(plan.instances))]
    for start in range(0, plan.distractors, _DISTRACTOR_CHUNK):
        tasks.append(("distractors", start, min(plan.distractors, start + _DISTRACTOR_CHUNK)))
    return tasks


def _run_task(plan: MuseumPlan, out: Path, task: Task) -> int:
    what, start, stop = task
    if what == "instance":
        return render_instance(plan, out, start)
    return render_distractors(plan, out, start, stop)


def _init_worker(plan: MuseumPlan, out: Path) -> None:
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would only compete
    _WORKER_STATE["plan"], _WORKER_STATE["out"] = plan, out


def _worker_task(task: Task) -> int:
    plan, out = _WORKER_STATE.get("plan"), _WORKER_STATE.get("out")
    if not isinstance(plan, MuseumPlan) or not isinstance(out, Path):
        raise RuntimeError("worker used before _init_worker set its museum plan")
    return _run_task(plan, out, task)


@contextlib.contextmanager
def _opencv_threads(n: int) -> Iterator[None]:
    before = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _render_all(plan: MuseumPlan, out: Path, workers: int, bar: tqdm) -> None:
    tasks = _tasks(plan)
    workers = min(workers, len(tasks))
    if workers <= 1:
        try:
            with _opencv_threads(1):
                for task in tasks:
                    bar.update(_run_task(plan, out, task))
        finally:
            _neighbour.cache_clear()  # the plan and its neighbours are not needed after this run
        return
    # spawn, not fork: the caller may hold threads (torch, gRPC) that a forked child would inherit
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(plan, out)) as pool:
        for n in pool.imap_unordered(_worker_task, tasks, chunksize=1):
            bar.update(n)


# ----------------------------------------------------------------------------- the museum


def _validate(*, instances: int, references: int, queries: int, distractors: int, seed: int, size: int,
              workers: int) -> None:
    for name, value, low in (("instances", instances, 1), ("references", references, 1), ("queries", queries, 0),
                             ("distractors", distractors, 0), ("seed", seed, 0), ("size", size, 64),
                             ("workers", workers, 1)):
        checks.integer(value, name, low=low)
    if size > 4096:
        raise ValueError(f"size must be <= 4096 pixels, got {size}")
    if seed >= 2**63:
        raise ValueError(f"seed must be < 2**63, got {seed}")


def is_synthetic_museum(out: Path) -> bool:
    """Whether ``out`` holds a museum this module wrote (its museum.json says so)."""
    meta = out / "museum.json"
    if not meta.is_file():
        return False
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("generator") == GENERATOR


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (overwrite or is_synthetic_museum(out)):
            raise FileExistsError(
                f"{out} is not empty and holds no synthetic museum (no museum.json from make-museum); "
                "choose an empty or new folder, or pass overwrite=True (--overwrite) to replace "
                f"{', '.join(_OWN_ENTRIES)} there"
            )
        for name in _OWN_ENTRIES:  # only what a museum consists of; anything else is left alone
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _write_instances_csv(plan: MuseumPlan, path: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "title", "kind", "family", "variant"])
    for inst in plan.instances:
        writer.writerow([inst.id, inst.title, inst.kind, f"f{inst.family:02d}", plan.styles[inst.family].variant])
    path.write_text(buf.getvalue(), encoding="utf-8")


def describe(plan: MuseumPlan) -> dict:
    """What museum.json records: the parameters and seed, enough to generate it again."""
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "seed": plan.seed,
        "instances": len(plan.instances),
        "references": plan.references,
        "queries": plan.queries,
        "distractors": plan.distractors,
        "size": plan.size,
        "canonical_size": plan.canonical,
        "images": plan.image_count,
        "families": len(plan.styles),
        "kinds": dict(sorted(Counter(i.kind for i in plan.instances).items())),
    }


def make_museum(out: Path, *, instances: int, references: int, queries: int, distractors: int, seed: int,
                size: int = 640, workers: int | None = None, progress: bool = True,
                overwrite: bool = False) -> dict:
    """Write a synthetic museum to ``out`` and return what museum.json records.

    ``references`` and ``queries`` are per artwork, ``distractors`` in total; photos have their
    long side ``size`` pixels. ``workers`` processes render it (default: one per CPU); the
    files do not depend on it. The returned dict also holds, under ``"run"``, the timing and
    worker count, which are kept out of museum.json so that the files stay reproducible.

    Workers are started with ``spawn``: a script that calls this with ``workers > 1`` needs
    the usual ``if __name__ == "__main__":`` guard.
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    _validate(instances=instances, references=references, queries=queries, distractors=distractors,
              seed=seed, size=size, workers=workers)
    out = Path(out)
    plan = plan_museum(instances=instances, references=references, queries=queries, distractors=distractors,
                       seed=seed, size=size)
    _prepare(out, overwrite)
    summary = describe(plan)
    # written first: it marks the folder as a synthetic museum, so an interrupted run can be redone
    (out / "museum.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    start = time.perf_counter()
    with tqdm(total=plan.image_count, unit="img", desc="make-museum", file=sys.stderr, disable=not progress) as bar:
        _render_all(plan, out, workers, bar)
    seconds = time.perf_counter() - start
    _write_instances_csv(plan, out / "instances.csv")
    summary["run"] = {"seconds": round(seconds, 3), "images_per_s": round(plan.image_count / max(seconds, 1e-9), 2),
                      "workers": min(workers, len(_tasks(plan)))}
    return summary


def non_artwork_photos(count: int, *, seed: int = 0, size: int = 640) -> list[np.ndarray]:
    """``count`` RGB uint8 photos of no artwork (bare walls, empty frames, floors, doorways,
    crowds), as the synthetic museum's distractors are shot; a function of ``seed`` alone.

    A museum without photos of "nothing" still needs the "no artwork" threshold to reject them.
    """
    checks.integer(count, "count", low=0)
    plan = plan_museum(instances=1, references=1, queries=0, distractors=max(1, count), seed=seed, size=size)
    photos = []
    for k in range(count):
        data = photograph_distractor(plan, seeding.rng_for(seed, seeding.DISTRACTOR, k))
        photos.append(cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                                   cv2.COLOR_BGR2RGB))
    return photos

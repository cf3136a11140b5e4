from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from muselens.core.synthetic import make_museum
from muselens.core.synthetic import make_walk_command as walk_command
from muselens.core.synthetic.museum import draw_artwork
from muselens.core.synthetic.walk import load_museum_plan, make_walk
from muselens.core.synthetic.walk_truth import MIN_CENTRE_COVERAGE

SIZE = (256, 144)
SECONDS, FPS = 16.0, 4.0


@pytest.fixture(scope="module")
def museum(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("walk") / "museum"
    make_museum(out, instances=3, references=1, queries=0, distractors=0, seed=0, size=64, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def walk(museum, tmp_path_factory) -> tuple[Path, object, dict]:
    out = tmp_path_factory.mktemp("walk") / "w"
    summary = make_walk(museum, out, seed=3, seconds=SECONDS, fps=FPS, size=SIZE, progress=False)
    return out, summary, json.loads((out / "walk.json").read_text())


def _runs(ids):
    """The sequence of distinct consecutive non-null values."""
    seq = []
    for i in ids:
        if i is not None and (not seq or seq[-1] != i):
            seq.append(i)
    return seq


def test_walk_writes_frames_video_and_ground_truth(walk):
    out, summary, doc = walk
    n = round(SECONDS * FPS)
    assert summary.frames == n == doc["frame_count"] == len(doc["frames"])
    frames = sorted((out / "frames").glob("*.jpg"))
    assert [f.name for f in frames] == [f"{i:06d}.jpg" for i in range(n)]
    img = cv2.imread(str(frames[0]))
    assert img.shape == (SIZE[1], SIZE[0], 3)
    assert [f["index"] for f in doc["frames"]] == list(range(n))
    assert doc["frames"][5]["time_s"] == pytest.approx(5 / FPS)
    assert doc["video"]["file"] == summary.video.name and doc["video"]["codec"] == summary.codec


def test_video_is_readable_with_every_frame(walk):
    _, summary, _ = walk
    cap = cv2.VideoCapture(str(summary.video))
    assert cap.isOpened()
    count = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (SIZE[1], SIZE[0], 3)
        count += 1
    cap.release()
    assert count == summary.frames


def test_in_view_visits_the_hung_artworks_in_wall_order(walk):
    _, summary, doc = walk
    hung = [a["id"] for a in doc["wall"]["artworks"]]
    assert len(hung) >= 2, "16 s past a 3-artwork museum hangs more than one"
    xs = [a["x"] for a in doc["wall"]["artworks"]]
    assert xs == sorted(xs)
    assert _runs(f["in_view"] for f in doc["frames"]) == hung
    assert list(summary.artworks_passed) == hung == list(summary.artworks)
    for f in doc["frames"]:
        if f["in_view"] is None:
            assert f["centre_coverage"] < MIN_CENTRE_COVERAGE
        else:
            assert f["centre_coverage"] >= MIN_CENTRE_COVERAGE
        for v in f["visible"]:
            assert v["id"] in hung and 0 < v["fraction"] <= 1


def test_bare_wall_frames_exist_and_see_no_artwork(walk):
    _, summary, doc = walk
    blank = [f for f in doc["frames"] if f["in_view"] is None]
    assert blank and summary.seconds_without_artwork == pytest.approx(len(blank) / FPS)
    assert any(not f["visible"] for f in blank), "some frames show no artwork at all"
    kinds = {f["kind"] for f in doc["wall"]["fixtures"]}
    assert {"door", "exit_sign", "bench", "bare_stretch"} <= kinds
    # every frame whose centre looks at the middle of the long bare stretch has nothing in view
    stretch = next(f for f in doc["wall"]["fixtures"] if f["kind"] == "bare_stretch")
    w, h = SIZE
    middle = []
    for f in doc["frames"]:
        H = np.array(f["homography"]).reshape(3, 3)
        p = np.linalg.inv(H) @ np.array([w / 2, h / 2, 1.0])
        x = p[0] / p[2]
        if stretch["x"] + 0.4 * stretch["width"] < x < stretch["x"] + 0.6 * stretch["width"]:
            middle.append(f)
    assert middle, "the walk crosses the bare stretch"
    assert all(f["in_view"] is None for f in middle)


def _warp(image: np.ndarray, rect: dict, H: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ih, iw = image.shape[:2]
    A = np.array([[rect["width"] / iw, 0, rect["x"]], [0, rect["height"] / ih, rect["y"]], [0, 0, 1.0]])
    M = H @ A
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    warped = cv2.warpPerspective(grey, M, size, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.ones_like(grey), M, size, flags=cv2.INTER_NEAREST) > 0.5
    return warped, mask


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-9))


def test_a_frame_in_view_of_an_artwork_shows_that_artwork(walk, museum):
    out, _, doc = walk
    plan = load_museum_plan(museum)
    renders = {inst.id: draw_artwork(plan, inst)[0] for inst in plan.instances}
    rects = {a["id"]: a for a in doc["wall"]["artworks"]}
    w, h = SIZE
    checked = 0
    for art_id in rects:
        frames = [f for f in doc["frames"] if f["in_view"] == art_id and not f["occluded"]]
        f = max(frames, key=lambda f: (f["paused"], f["centre_coverage"], -f["speed"]))
        frame = cv2.cvtColor(cv2.imread(str(out / "frames" / f"{f['index']:06d}.jpg")), cv2.COLOR_BGR2GRAY)
        H = np.array(f["homography"]).reshape(3, 3)
        scores = {}
        for other, image in renders.items():  # every artwork, as if it hung where the one in view hangs
            warped, mask = _warp(image, rects[art_id], H, (w, h))
            centre = np.zeros_like(mask)
            centre[h // 3:h - h // 3, w // 3:w - w // 3] = True
            sel = mask & centre
            assert sel.sum() > 0.2 * centre.sum()
            scores[other] = _ncc(frame.astype(np.float32)[sel], warped[sel])
        best_other = max(v for k, v in scores.items() if k != art_id)
        assert scores[art_id] > 0.6, (art_id, scores)
        assert scores[art_id] > best_other + 0.25, (art_id, scores)
        checked += 1
    assert checked >= 2


def test_passers_by_occlude_some_frames(walk):
    out, summary, doc = walk
    occluded = [f for f in doc["frames"] if f["occluded"]]
    assert occluded and summary.occluded_frames == len(occluded)
    assert doc["passers_by"]
    # a stop's artwork seen whole is reported less than whole while someone stands in front of it
    f = min(occluded, key=lambda f: min((v["fraction"] for v in f["visible"]), default=1.0))
    assert min(v["fraction"] for v in f["visible"]) < 0.95


def test_same_seed_gives_byte_identical_frames_and_another_seed_does_not(museum, walk, tmp_path):
    out, _, doc = walk
    again = make_walk(museum, tmp_path / "again", seed=3, seconds=SECONDS, fps=FPS, size=SIZE, progress=False)
    for i in range(again.frames):
        name = f"{i:06d}.jpg"
        assert (tmp_path / "again" / "frames" / name).read_bytes() == (out / "frames" / name).read_bytes(), name
    assert json.loads((tmp_path / "again" / "walk.json").read_text())["frames"] == doc["frames"]
    different = make_walk(museum, tmp_path / "other", seed=5, seconds=SECONDS, fps=FPS, size=SIZE, progress=False)
    assert different.frames == again.frames
    assert any((tmp_path / "other" / "frames" / f"{i:06d}.jpg").read_bytes()
               != (out / "frames" / f"{i:06d}.jpg").read_bytes() for i in range(again.frames))


def test_listed_artworks_hang_in_the_given_order(museum, tmp_path):
    summary = make_walk(museum, tmp_path / "w", seed=0, seconds=12.0, fps=2.0, size=(128, 72),
                        artworks=["a002", "a000"], progress=False)
    assert summary.artworks == ("a002", "a000")
    assert summary.artworks_passed == ("a002", "a000")
    assert summary.paused_at and set(summary.paused_at) <= {"a002", "a000"}


def test_rerun_replaces_a_walk_but_not_foreign_folders(museum, tmp_path):
    out = tmp_path / "w"
    make_walk(museum, out, seed=0, seconds=8.0, fps=2.0, size=(128, 72), progress=False)
    (out / "frames" / "999999.jpg").write_bytes(b"stale")
    make_walk(museum, out, seed=0, seconds=8.0, fps=2.0, size=(128, 72), progress=False)
    assert not (out / "frames" / "999999.jpg").exists()
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds no walk"):
        make_walk(museum, foreign, seconds=8.0, fps=2.0, size=(128, 72), progress=False)
    assert (foreign / "keep.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seed": -1}, ValueError, "seed must be in"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"seconds": 0}, ValueError, "seconds must lie in"),
        ({"seconds": "20"}, TypeError, "seconds must be a number"),
        ({"fps": 0}, ValueError, "fps must lie in"),
        ({"seconds": 0.1, "fps": 5}, ValueError, "at least 2 frames"),
        ({"size": (641, 360)}, ValueError, "even"),
        ({"size": (32, 32)}, ValueError, r"\[64, 4096\]"),
        ({"size": 640}, TypeError, "size must be"),
        ({"size": (640, 100)}, ValueError, "aspect"),
        ({"artworks": []}, ValueError, "at least one"),
        ({"artworks": "a000"}, TypeError, "list of instance ids"),
        ({"artworks": ["a000", "zzz"]}, ValueError, "unknown artwork ids"),
        ({"artworks": ["a000", "a000"]}, ValueError, "twice"),
        ({"seconds": 3.0}, ValueError, "takes at least"),
        ({"artworks": ["a000", "a001", "a002"], "seconds": 5.0}, ValueError, "takes at least"),
    ],
)
def test_bad_arguments_are_refused_naming_the_problem(museum, tmp_path, kwargs, error, match):
    args = {"seconds": 8.0, "fps": 2.0, "size": (128, 72), "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        make_walk(museum, tmp_path / "w", **args)
    assert not (tmp_path / "w" / "walk.json").exists()


def test_a_museum_without_make_museums_museum_json_is_refused(tiny_museum, tmp_path):
    with pytest.raises(ValueError, match="synthetic museum"):
        make_walk(tiny_museum, tmp_path / "w", seconds=8.0, fps=2.0, size=(128, 72), progress=False)
    (tiny_museum / "museum.json").write_text(json.dumps({"generator": "elsewhere"}))
    with pytest.raises(ValueError, match="not written by"):
        make_walk(tiny_museum, tmp_path / "w", seconds=8.0, fps=2.0, size=(128, 72), progress=False)


def test_make_walk_command_prints_a_summary(museum, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    walk_command.add_arguments(parser)
    args = parser.parse_args([str(museum), "--out", str(tmp_path / "w"), "--seconds", "8", "--fps", "2",
                              "--size", "128x72", "--seed", "1"])
    assert walk_command.main(args) == 0
    captured = capsys.readouterr()
    assert "wrote 16 frames (128x72, 2 fps)" in captured.out
    assert "artworks passed: 1 of 1" in captured.out and "seconds with no artwork" in captured.out
    assert "make-walk" in captured.err, "the progress bar goes to stderr"
    args = parser.parse_args([str(museum), "--out", str(tmp_path / "x"), "--artworks", "a000,nope", "--no-progress"])
    assert walk_command.main(args) == 2
    assert "unknown artwork ids" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args([str(museum), "--out", "x", "--size", "640by360"])

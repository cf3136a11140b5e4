"""Verified outlines carried by the camera's motion: a panning camera over a painted wall."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from muselens.runtime.streams.outline_tracking import MIN_WINDOW_S, OutlineTracker
from muselens.runtime.verification.shortlist import holds_centre
from tests.paintings import painting

VIEW = (360, 640)  # the camera's frame, (h, w)
WALL = painting(77, 480, 1600)  # wider than the view: the camera pans along it
ART = np.float64([[900, 120], [1100, 120], [1100, 300], [900, 300]])  # an artwork's corners on the wall


def view(x: int, y: int = 60) -> np.ndarray:
    """The camera's frame with its top-left at (x, y) of the wall."""
    return WALL[y:y + VIEW[0], x:x + VIEW[1]].copy()


def outline_at(x: int, y: int = 60) -> np.ndarray:
    """The artwork's outline in the frame at (x, y), normalised to it."""
    return ((ART - [x, y]) / [VIEW[1], VIEW[0]]).astype(np.float32)


def fit(x: int, y: int = 60, inliers: int = 40, evidence: float = 0.9):
    return SimpleNamespace(inliers=inliers, evidence=evidence, outline=outline_at(x, y))


def test_an_outline_is_carried_with_the_camera():
    tracker = OutlineTracker()
    tracker.observe(0.0, view(100))
    tracker.verified(0.0, {"a1": fit(100)})
    for i, x in enumerate(range(112, 220, 12), start=1):
        tracker.observe(0.03 * i, view(x, 60 + i))  # panning right, drifting down a little
        carried = tracker.in_view(0.03 * i).carried
        assert [c.instance_id for c in carried] == ["a1"]
        np.testing.assert_allclose(carried[0].outline, outline_at(x, 60 + i), atol=0.01)  # about 5 pixels
        assert carried[0].age_s == pytest.approx(0.03 * i)


def test_a_neighbour_fitted_at_the_edge_is_the_answer_once_the_camera_brings_it_to_the_centre():
    tracker = OutlineTracker()
    tracker.observe(0.0, view(500))  # the artwork at the right edge, the centre on bare wall
    tracker.verified(0.0, {"a1": fit(500)})
    first = tracker.in_view(0.0)
    assert first.centre is None and [c.instance_id for c in first.carried] == ["a1"]
    centres = []
    for i, x in enumerate(range(530, 720, 30), start=1):
        tracker.observe(0.05 * i, view(x))
        seen = tracker.in_view(0.05 * i)
        centres.append(seen.centre.instance_id if seen.centre else None)
        assert (seen.centre is not None) == holds_centre(outline_at(x))
    assert centres[0] is None and centres[-1] == "a1"


def test_of_two_artworks_over_the_centre_the_one_of_more_evidence_is_the_answer():
    tracker = OutlineTracker()
    tracker.observe(0.0, view(700))
    tracker.verified(0.0, {"weak": fit(700, evidence=0.6), "strong": fit(700, evidence=0.8)})
    assert tracker.in_view(0.0).centre.instance_id == "strong"


def test_outlines_are_dropped_after_the_window():
    tracker = OutlineTracker()
    tracker.observe(0.0, view(700))
    tracker.verified(0.0, {"a1": fit(700)})
    tracker.observe(MIN_WINDOW_S - 0.01, view(700))
    assert tracker.in_view(MIN_WINDOW_S - 0.01).centre.instance_id == "a1"
    tracker.observe(MIN_WINDOW_S + 0.01, view(700))
    assert tracker.in_view(MIN_WINDOW_S + 0.01) is None
    # a stream verified every second keeps its outlines 1.25 s
    tracker.verified(MIN_WINDOW_S + 0.01, {"a1": fit(700)})
    tracker.observe(1.2, view(700))
    assert tracker.in_view(1.2, interval_s=1.0) is not None and tracker.in_view(1.2) is None


def test_a_frame_whose_motion_is_unknown_drops_what_came_before():
    tracker = OutlineTracker()
    tracker.observe(0.0, view(700))
    tracker.verified(0.0, {"a1": fit(700)})
    tracker.observe(0.05, np.full((*VIEW, 3), 128, np.uint8))  # a bare wall: no corners to follow
    assert tracker.in_view(0.05) is None
    tracker.observe(0.1, view(700))
    assert tracker.in_view(0.1) is None  # the chain is broken: the old fit cannot be carried past it
    tracker.verified(0.1, {"a1": fit(700)})
    assert tracker.in_view(0.1).centre.instance_id == "a1"


def test_a_late_verification_of_an_older_frame_does_not_replace_a_newer_fit():
    tracker = OutlineTracker()
    for i, x in enumerate((600, 620, 640)):
        tracker.observe(0.1 * i, view(x))
    tracker.verified(0.2, {"a1": fit(640, inliers=50)})
    tracker.verified(0.1, {"a1": fit(620, inliers=20)})
    assert tracker.in_view(0.2).carried[0].inliers == 50


def test_a_verification_of_a_frame_the_tracker_never_saw_is_ignored():
    tracker = OutlineTracker()
    tracker.observe(1.0, view(700))
    tracker.verified(0.5, {"a1": fit(700)})  # e.g. offered before a new bundle's tracker started
    assert tracker.in_view(1.0) is None
    assert tracker.in_view(2.0) is None  # a frame it never observed: nothing is known


def test_frames_of_another_size_start_a_new_chain():
    tracker = OutlineTracker()
    tracker.observe(0.0, view(700))
    tracker.verified(0.0, {"a1": fit(700)})
    tracker.observe(0.05, WALL[:200, :300].copy())  # the client changed its camera's resolution
    assert tracker.in_view(0.05) is None


def test_the_tracking_settings_are_checked():
    with pytest.raises(ValueError, match="tracking width"):
        OutlineTracker(width=4)
    with pytest.raises(ValueError, match="tracking window"):
        OutlineTracker(min_window_s=-1)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 5)])
def test_a_frame_too_small_to_follow_breaks_the_chain_and_nothing_else(size):
    tracker = OutlineTracker()
    tiny = WALL[:size[0], :size[1]].copy()
    tracker.observe(0.0, tiny)
    tracker.verified(0.0, {"a1": fit(700)})
    tracker.observe(0.05, tiny)  # the same tiny frame again: no motion can be estimated
    assert tracker.in_view(0.05) is None


def test_an_artwork_tried_and_not_fitted_where_others_fit_is_not_in_view_for_the_window():
    tracker = OutlineTracker()
    tracker.observe(0.0, view(500))
    tracker.verified(0.0, {}, unfitted=["a2"])  # nothing fitted: the frame may be too blurred to say
    tracker.verified(0.0, {"a1": fit(500)}, unfitted=["a2"])
    assert tracker.in_view(0.0).not_in_view == {"a2"}
    tracker.observe(0.3, view(500))
    tracker.verified(0.3, {"a2": fit(500)})  # a newer frame fits it: it is back
    assert tracker.in_view(0.3).not_in_view == frozenset()
    tracker.verified(0.3, {"a1": fit(500)}, unfitted=["a2"])
    tracker.observe(0.3 + MIN_WINDOW_S + 0.01, view(500))
    assert tracker.in_view(0.3 + MIN_WINDOW_S + 0.01) is None  # the window is over for both


def test_an_opencv_error_while_following_breaks_the_chain_and_the_stream_goes_on(monkeypatch):
    import cv2

    from muselens.runtime.streams import outline_tracking

    def fails(previous, current):
        raise cv2.error("OpenCV(4.x) error: (-215:Assertion failed) in calcOpticalFlowPyrLK")

    tracker = OutlineTracker()
    tracker.observe(0.0, view(700))
    tracker.verified(0.0, {"a1": fit(700)})
    monkeypatch.setattr(outline_tracking, "_motion", fails)
    tracker.observe(0.05, view(700))  # does not raise
    assert tracker.in_view(0.05) is None

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muselens.runtime.streams.smoother_config import SmootherConfig, ema_alpha
from muselens.runtime.streams.decision import Decision, SmoothedDecision
from muselens.runtime.streams.smoother import MAX_TIMESTAMP_S, StreamSmoother

T = 0.5  # a calibrated "no artwork" threshold


def _settle(smoother: StreamSmoother, candidates, frames: int = 40) -> SmoothedDecision:
    result = None
    for _ in range(frames):
        result = smoother.update(candidates, Decision.ARTWORK)
    return result


def _frames_until(condition, limit: int = 1000) -> int:
    """The first k >= 1 (frames after a change) for which ``condition(k)`` holds."""
    for k in range(1, limit):
        if condition(k):
            return k
    raise AssertionError("condition never held")


def _switches(ids) -> int:
    return sum(1 for before, after in zip(ids, ids[1:]) if before != after)


# -- what the hysteresis is for --------------------------------------------------------------------

def test_two_close_artworks_do_not_flicker():
    rng = np.random.default_rng(0)
    smoother = StreamSmoother(T)
    raw, shown = [], []
    for _ in range(300):
        frame = [("a", 0.75 + rng.normal(0, 0.04)), ("b", 0.72 + rng.normal(0, 0.04)),
                 ("c", 0.35 + rng.normal(0, 0.02))]
        frame.sort(key=lambda pair: -pair[1])
        raw.append(frame[0][0])
        result = smoother.update(frame, "artwork")
        shown.append(result.instance_id)
    assert _switches(raw) > 60  # the raw argmax flickers
    first = next(i for i, iid in enumerate(shown) if iid is not None)
    assert first <= 10  # the EMA rises from the floor, then min_frames frames of hysteresis
    assert set(shown[first:]) <= {"a", "b"} and None not in shown[first:]
    assert _switches(shown[first:]) == 0


def test_strictly_alternating_leader_is_held():
    smoother = StreamSmoother(T)
    shown = []
    for i in range(100):
        a, b = (0.78, 0.74) if i % 2 else (0.74, 0.78)
        shown.append(smoother.update([("a", a), ("b", b)], "artwork").instance_id)
    assert _switches(shown[10:]) == 0


@pytest.mark.parametrize("min_frames", [1, 2, 3, 5])
@pytest.mark.parametrize("half_life", [1.0, 1.5, 3.0])
def test_clear_change_is_followed_after_min_frames(min_frames, half_life):
    config = SmootherConfig(min_frames=min_frames, half_life_frames=half_life)
    smoother = StreamSmoother(T, config)
    assert _settle(smoother, [("a", 0.8)]).instance_id == "a"
    # Oracle: a decays from 0.8 to the floor (0), b rises from the floor to 0.8.
    keep = 1 - ema_alpha(half_life, 1.0)
    b = lambda k: 0.8 * (1 - keep**k)  # noqa: E731
    a = lambda k: 0.8 * keep**k  # noqa: E731
    first = _frames_until(lambda k: b(k) > T + config.enter_margin and b(k) > a(k) + config.switch_margin)
    expected = first + min_frames - 1
    ids = [smoother.update([("b", 0.8)], "artwork").instance_id for _ in range(expected + 5)]
    assert ids.index("b") + 1 == expected
    assert expected >= min_frames
    assert set(ids[:expected - 1]) <= {"a", None} and set(ids[expected - 1:]) == {"b"}


def test_no_artwork_frames_lead_to_no_artwork_after_the_hysteresis():
    smoother = StreamSmoother(T)
    config = smoother.config
    assert _settle(smoother, [("a", 0.8), ("b", 0.3)]).instance_id == "a"
    keep = 1 - ema_alpha(config.half_life_frames, 1.0)
    first = _frames_until(lambda k: 0.3 + 0.5 * keep**k < T - config.exit_margin)
    expected = first + config.min_frames - 1
    results = [smoother.update([("a", 0.3), ("b", 0.2)], "no_artwork") for _ in range(expected + 5)]
    decisions = [r.decision for r in results]
    assert decisions[:expected - 1] == [Decision.ARTWORK] * (expected - 1)
    assert all(r.instance_id == "a" for r in results[:expected - 1])
    assert decisions[expected - 1:] == [Decision.NO_ARTWORK] * 6
    assert results[expected - 1].instance_id is None
    assert results[-1].score == pytest.approx(0.3, abs=0.01)  # the best candidate's smoothed score


def test_no_artwork_frame_never_counts_for_an_artwork():
    """The recogniser said no (e.g. a failed verification) although a score is high: respected."""
    smoother = StreamSmoother(T)
    results = [smoother.update([("a", 0.95)], "no_artwork") for _ in range(20)]
    assert {r.decision for r in results} <= {Decision.UNCERTAIN, Decision.NO_ARTWORK}
    assert results[-1].decision is Decision.NO_ARTWORK
    assert smoother.smoothed_scores()["a"] <= T


def test_a_new_stream_is_uncertain_until_confirmed():
    quiet = StreamSmoother(T)
    decisions = [quiet.update([("a", 0.2)], "no_artwork").decision for _ in range(4)]
    assert decisions == [Decision.UNCERTAIN, Decision.UNCERTAIN, Decision.NO_ARTWORK, Decision.NO_ARTWORK]
    clear = StreamSmoother(T)
    decisions = [clear.update([("a", 0.8)], "artwork").decision for _ in range(8)]
    assert decisions[0] is Decision.UNCERTAIN and decisions[-1] is Decision.ARTWORK
    assert Decision.NO_ARTWORK not in decisions


@settings(max_examples=150, deadline=None, database=None)
@given(threshold=st.floats(0.3, 0.7), outlier=st.floats(0.0, 1.0), at=st.integers(5, 30),
       shown_in_outlier=st.booleans(), outlier_decision=st.sampled_from(list(Decision)))
def test_a_single_outlier_frame_never_switches(threshold, outlier, at, shown_in_outlier, outlier_decision):
    shown = min(threshold + 0.25, 1.0)
    smoother = StreamSmoother(threshold)
    ids = []
    for i in range(60):
        if i == at:
            frame = [("c", outlier)] + ([("a", shown)] if shown_in_outlier else [])
            result = smoother.update(frame, outlier_decision)
        else:
            result = smoother.update([("a", shown), ("b", threshold - 0.2)], "artwork")
        ids.append(result.instance_id)
    assert "c" not in ids
    assert set(ids[10:]) == {"a"}


@settings(max_examples=100, deadline=None, database=None)
@given(threshold=st.floats(0.3, 0.7), outlier=st.floats(0.0, 1.0), at=st.integers(0, 30))
def test_a_single_outlier_frame_never_shows_an_artwork(threshold, outlier, at):
    smoother = StreamSmoother(threshold)
    for i in range(40):
        frame = [("c", outlier)] if i == at else [("b", threshold - 0.2)]
        assert smoother.update(frame, "artwork").decision is not Decision.ARTWORK


# -- uncertain frames, bookkeeping -----------------------------------------------------------------

def test_uncertain_frames_weigh_less():
    full, half, none = (StreamSmoother(T, SmootherConfig(uncertain_weight=w)) for w in (1.0, 0.5, 0.0))
    for smoother in (full, half, none):
        _settle(smoother, [("a", 0.8)])
    alpha = ema_alpha(full.config.half_life_frames, 1.0)
    before = full.smoothed_scores()["a"]
    assert full.update([("a", 0.2)], "uncertain").score == pytest.approx(before + alpha * (0.2 - before))
    assert half.update([("a", 0.2)], "uncertain").score == pytest.approx(before + alpha / 2 * (0.2 - before))
    result = none.update([("a", 0.2)], "uncertain")
    assert result.score == before and result.instance_id == "a"


def test_stable_frames_counts_unchanged_answers():
    smoother = StreamSmoother(T)
    stable = [(r.decision, r.stable_frames) for r in (smoother.update([("a", 0.9)], "artwork") for _ in range(7))]
    changed = next(i for i, (d, _) in enumerate(stable) if d is Decision.ARTWORK)
    assert [s for _, s in stable[:changed]] == list(range(1, changed + 1))
    assert [s for _, s in stable[changed:]] == list(range(1, len(stable) - changed + 1))


def test_reset_starts_a_new_stream():
    rng = np.random.default_rng(1)
    frames = [[("a", float(x)), ("b", float(y))] for x, y in rng.uniform(0.2, 0.9, size=(30, 2))]
    used = StreamSmoother(T)
    _settle(used, [("z", 0.9)])
    used.reset()
    fresh = StreamSmoother(T)
    for frame in frames:
        assert used.update(frame, "artwork") == fresh.update(frame, "artwork")
    assert "z" not in used.smoothed_scores()


def test_absent_candidates_are_forgotten_and_tracking_is_bounded():
    smoother = StreamSmoother(T, SmootherConfig(max_tracked=10))
    _settle(smoother, [("a", 0.9)])
    for i in range(50):
        smoother.update([("a", 0.9)] + [(f"x{i}-{j}", 0.4) for j in range(5)], "artwork")
    scores = smoother.smoothed_scores()
    assert len(scores) == 10 and "a" in scores
    for _ in range(60):
        smoother.update([("a", 0.9)], "artwork")
    assert list(smoother.smoothed_scores()) == ["a"]


def test_ties_are_broken_by_id():
    results = []
    for order in ([("b", 0.8), ("a", 0.8)], [("a", 0.8), ("b", 0.8)]):
        smoother = StreamSmoother(T, SmootherConfig(switch_margin=0.0))
        results.append(_settle(smoother, order).instance_id)
    assert results == ["a", "a"]


def test_numpy_scores_and_lists_are_accepted():
    smoother = StreamSmoother(np.float32(T))
    result = smoother.update([["a", np.float32(0.9)], ("b", np.float64(0.1)), ("c", 1)], Decision.ARTWORK)
    assert isinstance(result.score, float)


# -- timestamps ------------------------------------------------------------------------------------

def test_time_aware_alpha():
    smoother = StreamSmoother(T, SmootherConfig(half_life_s=0.1))
    first = smoother.update([("a", 0.8)], "artwork", timestamp=10.0).score
    assert first == pytest.approx(0.8 * ema_alpha(1.5, 1.0))  # no previous frame: one nominal step
    second = smoother.update([("a", 0.8)], "artwork", timestamp=10.2).score
    assert second == pytest.approx(first + 0.75 * (0.8 - first))  # two half-lives: 3/4 of the way
    after_gap = smoother.update([("a", 0.2)], "artwork", timestamp=100.0).score
    assert after_gap == pytest.approx(0.2)  # a long gap forgets the past


def test_time_aware_smoothing_does_not_depend_on_frame_rate():
    config = SmootherConfig(half_life_s=0.15)
    fast, slow = StreamSmoother(T, config), StreamSmoother(T, config)
    for i in range(31):  # 30 fps for one second, 10 fps for the same second
        t = i / 30
        fast_score = fast.update([("a", 0.9), ("b", 0.1 + 0.01 * (i > 0))], "artwork", timestamp=t)
        if i % 3 == 0:
            slow_score = slow.update([("a", 0.9), ("b", 0.1 + 0.01 * (i > 0))], "artwork", timestamp=t)
            assert fast_score.score == pytest.approx(slow_score.score, abs=1e-9)
            assert fast.smoothed_scores()["b"] == pytest.approx(slow.smoothed_scores()["b"], abs=1e-9)


@pytest.mark.parametrize("bad", [4.9, 5.0, math.nan, math.inf])
def test_out_of_order_timestamp_is_refused_and_changes_nothing(bad):
    config = SmootherConfig(half_life_s=0.2)
    smoother, twin = StreamSmoother(T, config), StreamSmoother(T, config)
    for t in (4.0, 4.5, 5.0):
        smoother.update([("a", 0.9)], "artwork", timestamp=t)
        twin.update([("a", 0.9)], "artwork", timestamp=t)
    with pytest.raises(ValueError, match="timestamp"):
        smoother.update([("b", 0.9)], "artwork", timestamp=bad)
    assert smoother.smoothed_scores() == twin.smoothed_scores()
    assert smoother.update([("a", 0.9)], "artwork", 5.1) == twin.update([("a", 0.9)], "artwork", 5.1)


@pytest.mark.parametrize("bad", [1e308, 2e12, -1.0, -math.inf, math.inf, math.nan])
def test_an_absurd_timestamp_is_refused_alone_and_does_not_poison_the_stream(bad):
    """One accepted 1e308 once made every later timestamp 'go backwards': the stream was dead."""
    config = SmootherConfig(half_life_s=0.2)
    smoother, twin = StreamSmoother(T, config), StreamSmoother(T, config)
    with pytest.raises(ValueError, match="timestamp"):
        smoother.check_timestamp(bad)
    with pytest.raises(ValueError, match="timestamp"):
        smoother.update([("b", 0.9)], "artwork", timestamp=bad)  # first frame of the stream
    for t in (4.0, 4.5):
        assert smoother.update([("a", 0.9)], "artwork", timestamp=t) == twin.update([("a", 0.9)], "artwork", t)
    with pytest.raises(ValueError, match="timestamp"):
        smoother.update([("b", 0.9)], "artwork", timestamp=bad)  # and later on
    assert smoother.update([("a", 0.9)], "artwork", 5.0) == twin.update([("a", 0.9)], "artwork", 5.0)


def test_timestamps_anywhere_in_the_allowed_range_are_accepted():
    smoother = StreamSmoother(T, SmootherConfig(half_life_s=0.2))
    for t in (0.0, 1.7e9, MAX_TIMESTAMP_S):  # any epoch: from a stream's start, Unix time, the limit itself
        smoother.check_timestamp(t)
        smoother.update([("a", 0.9)], "artwork", timestamp=t)
    with pytest.raises(ValueError, match="milliseconds"):  # the likely mistake gets named
        StreamSmoother(T).check_timestamp(1.7e12)


def test_missing_timestamp_uses_arrival_order_and_breaks_the_chain():
    smoother = StreamSmoother(T, SmootherConfig(half_life_s=0.1))
    smoother.update([("a", 0.8)], "artwork", timestamp=1.0)
    smoother.update([("a", 0.8)], "artwork")
    before = smoother.smoothed_scores()["a"]
    # The previous frame had no time: this one counts as one nominal step, whatever its time.
    after = smoother.update([("a", 0.8)], "artwork", timestamp=0.5).score
    assert after == pytest.approx(before + ema_alpha(1.5, 1.0) * (0.8 - before))


# -- validation ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("candidates", "decision", "error", "match"), [
    ([("a", 0.5), ("a", 0.6)], "artwork", ValueError, "'a' appears twice"),
    ([("a", math.nan)], "artwork", ValueError, "score of candidate 'a' must be finite"),
    ([("a", True)], "artwork", TypeError, "score of candidate 'a' must be a number"),
    ([("a", "0.5")], "artwork", TypeError, "must be a number"),
    ([(3, 0.5)], "artwork", TypeError, "instance_id must be a non-empty string"),
    ([("", 0.5)], "artwork", TypeError, "instance_id must be a non-empty string"),
    ([("a", 0.5, 1)], "artwork", TypeError, "must be an .instance_id, score. pair"),
    ("a0", "artwork", TypeError, "got a string"),
    ([("a", 0.5)], "maybe", ValueError, "maybe"),
])
def test_bad_frames_are_refused_and_change_nothing(candidates, decision, error, match):
    smoother = StreamSmoother(T)
    _settle(smoother, [("a", 0.8)], frames=5)
    before = smoother.smoothed_scores()
    with pytest.raises(error, match=match):
        smoother.update(candidates, decision)
    assert smoother.smoothed_scores() == before


@pytest.mark.parametrize(("threshold", "config", "error", "match"), [
    (math.nan, None, ValueError, "threshold must be finite"),
    ("0.5", None, TypeError, "threshold must be a number"),
    (0.5, {"floor": 0.5}, ValueError, "floor .0.5. must lie below threshold - exit_margin"),
    (0.5, {"floor": 0.45, "exit_margin": 0.05}, ValueError, "never exits"),
    (0.5, "default", TypeError, "config must be a SmootherConfig"),
])
def test_invalid_smoother(threshold, config, error, match):
    if isinstance(config, dict):
        config = SmootherConfig(**config)
    with pytest.raises(error, match=match):
        StreamSmoother(threshold, config)


# -- geometric verification beside the stream (confirm) ---------------------------------------------


def test_a_verified_artwork_is_shown_at_once_and_held_against_the_scores():
    config = SmootherConfig(verified_hold_frames=4)
    s = StreamSmoother(0.5, config)
    assert s.update([("a", 0.3)], Decision.NO_ARTWORK).decision is Decision.UNCERTAIN
    s.confirm("a")  # a plain frame's score never cleared the threshold; its reference fits
    held = [s.update([("a", 0.3)], Decision.NO_ARTWORK) for _ in range(4)]
    assert all(h.decision is Decision.ARTWORK and h.instance_id == "a" for h in held)
    after = [s.update([("a", 0.3)], Decision.NO_ARTWORK) for _ in range(config.min_frames + 3)]
    assert after[-1].decision is Decision.NO_ARTWORK  # the hold over, the scores decide again


def test_verification_corrects_the_shown_artwork_and_another_artwork_cannot_take_over_during_the_hold():
    s = StreamSmoother(0.5, SmootherConfig(verified_hold_frames=5))
    for _ in range(4):
        shown = s.update([("a", 0.9), ("b", 0.6)], Decision.ARTWORK)
    assert shown.instance_id == "a"
    s.confirm("b")
    for _ in range(5):
        assert s.update([("a", 0.95), ("b", 0.55)], Decision.ARTWORK).instance_id == "b"
    for _ in range(4):
        shown = s.update([("a", 0.95), ("b", 0.55)], Decision.ARTWORK)
    assert shown.instance_id == "a"


def test_a_release_ends_the_hold_and_the_scores_decide_again():
    config = SmootherConfig(verified_hold_frames=50)
    s = StreamSmoother(0.5, config)
    s.confirm("a")
    assert s.update([("a", 0.3)], Decision.NO_ARTWORK).instance_id == "a"
    s.release()
    answers = [s.update([("a", 0.3)], Decision.NO_ARTWORK) for _ in range(config.min_frames + 3)]
    assert answers[-1].decision is Decision.NO_ARTWORK


def test_confirm_takes_an_instance_id():
    s = StreamSmoother(0.5)
    for bad in ("", None, 3):
        with pytest.raises(TypeError, match="instance_id must be a non-empty string"):
            s.confirm(bad)
    with pytest.raises(ValueError, match="verified_hold_frames"):
        SmootherConfig(verified_hold_frames=0)


def test_a_failed_fit_after_a_verified_artwork_means_the_camera_moved_on():
    """The artwork verification confirmed stops being shown at once when a newer frame fits nothing,
    even though its smoothed score is still high: the scores must earn it back."""
    config = SmootherConfig(verified_hold_frames=10)
    s = StreamSmoother(0.5, config)
    for _ in range(4):
        s.update([("a", 0.9)], Decision.ARTWORK)
    s.confirm("a")
    s.update([("a", 0.9)], Decision.ARTWORK)
    s.release()  # a newer frame fits nothing: the camera moved on
    moved_on = s.update([("a", 0.3)], Decision.NO_ARTWORK)
    assert moved_on.decision is not Decision.ARTWORK
    # the descriptor alone brings it back, over min_frames frames, if it is still in view
    back = [s.update([("a", 0.9)], Decision.ARTWORK) for _ in range(config.min_frames + 2)]
    assert back[0].decision is not Decision.ARTWORK and back[-1].instance_id == "a"


def test_a_failed_fit_does_not_drop_an_artwork_shown_from_its_scores_alone():
    """A plain artwork never fits its reference: a failed fit says nothing about it."""
    s = StreamSmoother(0.5, SmootherConfig(verified_hold_frames=10))
    for _ in range(4):
        shown = s.update([("a", 0.9)], Decision.ARTWORK)
    assert shown.instance_id == "a"
    s.release()
    assert s.update([("a", 0.9)], Decision.ARTWORK).instance_id == "a"


def test_a_failed_fit_long_after_the_verification_does_not_drop_the_artwork():
    config = SmootherConfig(verified_hold_frames=3)
    s = StreamSmoother(0.5, config)
    s.confirm("a")
    for _ in range(config.verified_hold_frames + 2):
        shown = s.update([("a", 0.9)], Decision.ARTWORK)
    assert shown.instance_id == "a"
    s.release()  # the fit is too old to say the failed one means the camera moved
    assert s.update([("a", 0.9)], Decision.ARTWORK).instance_id == "a"


def test_a_failed_fit_does_not_drop_another_artwork_than_the_verified_one():
    config = SmootherConfig(verified_hold_frames=10)
    s = StreamSmoother(0.5, config)
    s.confirm("a")
    s.update([("a", 0.9)], Decision.ARTWORK)
    s.confirm("b")  # verification corrected the answer, then the scores hold b
    s.update([("b", 0.9)], Decision.ARTWORK)
    s.release()
    assert s.update([("b", 0.9)], Decision.ARTWORK).decision is not Decision.ARTWORK  # b was the verified one
    s2 = StreamSmoother(0.5, config)
    s2.confirm("a")
    s2.update([("a", 0.9)], Decision.ARTWORK)
    s2.release()  # drops a ...
    for _ in range(config.min_frames + 2):
        shown = s2.update([("c", 0.95)], Decision.ARTWORK)
    assert shown.instance_id == "c"
    s2.release()  # ... and c, shown from its scores, stays
    assert s2.update([("c", 0.95)], Decision.ARTWORK).instance_id == "c"


def test_an_artwork_that_still_fits_is_not_dropped_by_a_failed_answer():
    """The frame's answer was not verified (another candidate's score outweighed every fit), but the
    shown artwork did fit: the camera has not moved on from it."""
    s = StreamSmoother(0.5, SmootherConfig(verified_hold_frames=10))
    s.confirm("a")
    s.update([("a", 0.9)], Decision.ARTWORK)
    s.release(fitted={"a"})
    assert s.update([("a", 0.9)], Decision.ARTWORK).instance_id == "a"


def test_an_artwork_verification_found_not_in_view_is_not_shown_from_its_scores():
    """A descriptor's favourite ("hub") scores high on frames of bare wall; verification tried it on a
    frame where a neighbour fitted, and it fitted nowhere: while that holds, its scores show nothing."""
    s = StreamSmoother(0.5)
    for _ in range(4):
        shown = s.update([("hub", 0.9)], Decision.ARTWORK)
    assert shown.instance_id == "hub"
    s.refute({"hub"})
    refuted = []
    for _ in range(6):  # refuted again with each frame while the verification is recent
        refuted.append(s.update([("hub", 0.9)], Decision.ARTWORK))
        s.refute({"hub"})
    assert all(r.decision is not Decision.ARTWORK for r in refuted)
    back = [s.update([("hub", 0.9)], Decision.ARTWORK) for _ in range(4)]  # no longer refuted: the scores decide
    assert back[-1].instance_id == "hub"
    s.refute({"other"})  # one never seen changes nothing
    assert s.update([("hub", 0.9)], Decision.ARTWORK).instance_id == "hub"

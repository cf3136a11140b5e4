import numpy as np
import pytest

from muselens.runtime.metrics import calibrate_threshold
from muselens.runtime.metrics.threshold import (DISTRACTORS, GENERATED, IMPOSTORS, calibrate_sources,
                                                impostor_scores, negative_scores)


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_impostor_scores_never_score_a_view_against_its_own_artwork():
    rng = np.random.default_rng(0)
    gallery = _unit(rng.normal(size=(5, 8)))
    labels = np.array(["a", "b", "c", "d", "e"])
    views = gallery.copy()  # each view identical to its own artwork: its own score would be 1
    scores = impostor_scores(views, labels, gallery, labels)
    brute = [max(float(views[i] @ gallery[j]) for j in range(5) if j != i) for i in range(5)]
    np.testing.assert_allclose(scores, brute, rtol=1e-6)
    assert (scores < 0.999).all()


def test_impostor_scores_of_a_one_artwork_museum_are_empty():
    g = _unit(np.ones((2, 4)))
    assert impostor_scores(g, ["a", "a"], g, ["a", "a"]).size == 0


def test_calibration_takes_the_strictest_source_and_records_each():
    d = np.linspace(0, 0.5, 100)
    i = np.linspace(0.2, 0.9, 100)
    cal = calibrate_sources({DISTRACTORS: d, IMPOSTORS: i, GENERATED: np.array([])}, 0.01)
    assert cal.value == pytest.approx(calibrate_threshold(i, 0.01))
    assert cal.deciding_source == IMPOSTORS
    assert [s.source for s in cal.sources] == [DISTRACTORS, IMPOSTORS]  # the empty source is left out
    assert cal.sources[0].threshold == pytest.approx(calibrate_threshold(d, 0.01))
    assert "impostor-views" in cal.describe()


@pytest.mark.parametrize("bad, match", [({}, "no negative"), ({"walls": np.ones(3)}, "unknown threshold sources")])
def test_calibration_refuses_nothing_or_unknown_sources(bad, match):
    with pytest.raises(ValueError, match=match):
        calibrate_sources(bad, 0.01)


def test_negative_scores_without_distractors_still_gives_every_other_source():
    rng = np.random.default_rng(1)
    refs = [rng.integers(0, 255, (64, 80, 3), dtype=np.uint8) for _ in range(4)]

    def describe(images):  # a deterministic toy descriptor: mean colour and a few pixels
        feats = np.stack([np.concatenate([im.reshape(-1, 3).mean(0), im[::16, ::16].reshape(-1)[:13]])
                          for im in images]).astype(np.float32)
        return _unit(feats + 1.0)

    gallery = describe(refs)
    labels = ["a", "b", "c", "d"]
    scores = negative_scores(describe, gallery, labels, references=refs, reference_labels=labels,
                             generated=3, seed=0)
    assert set(scores) == {IMPOSTORS, GENERATED}
    assert scores[IMPOSTORS].shape == (4,) and scores[GENERATED].shape == (3,)
    again = negative_scores(describe, gallery, labels, references=refs, reference_labels=labels,
                            generated=3, seed=0)
    np.testing.assert_array_equal(scores[IMPOSTORS], again[IMPOSTORS])  # a function of the seed
    cal = calibrate_sources(scores, 0.01)
    assert -1.0 <= cal.value <= 1.0


def test_pairwise_entry_point_gives_what_negative_scores_gives_for_descriptors():
    """The same views and generated photos, whatever scores them: here descriptors, brute force."""
    from muselens.runtime.metrics.threshold import negative_top1_scores

    rng = np.random.default_rng(2)
    refs = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(3)]

    def describe(images):
        return _unit(np.stack([im[::8, ::8].reshape(-1)[:24] for im in images]).astype(np.float32) + 1.0)

    gallery, labels = describe(refs), np.array(["a", "b", "c"])
    distractors = describe([rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2)])

    def top1(images, exclude_labels):
        d = describe(images)
        return np.array([max(float(d[i] @ gallery[j]) for j in range(3)
                             if exclude_labels is None or labels[j] != exclude_labels[i]) for i in range(len(d))])

    expected = negative_scores(describe, gallery, labels, references=refs, reference_labels=labels,
                               distractors=distractors, generated=2, seed=3)
    got = negative_top1_scores(top1, references=refs, reference_labels=labels,
                               distractor_scores=(distractors @ gallery.T).max(axis=1), generated=2, seed=3)
    assert set(got) == set(expected) == {DISTRACTORS, IMPOSTORS, GENERATED}
    for source in got:
        np.testing.assert_allclose(got[source], expected[source], rtol=1e-5)


def test_pairwise_scores_are_calibrated_without_clipping():
    from muselens.runtime.metrics.threshold import calibrate_source_scores

    inliers = {IMPOSTORS: np.arange(4.0, 104.0), GENERATED: np.arange(0.0, 10.0)}
    cal = calibrate_source_scores(inliers, 0.01)
    assert cal.value == calibrate_threshold(inliers[IMPOSTORS], 0.01) == 102.0  # 1 of 100 allowed above
    assert calibrate_sources(inliers, 0.01).value == 1.0  # the descriptor entry point clips to cosines


def test_pairwise_views_with_no_other_artwork_are_left_out():
    from muselens.runtime.metrics.threshold import negative_top1_scores

    refs = [np.full((32, 32, 3), 90, np.uint8)] * 2

    def top1(images, exclude_labels):  # one artwork: excluding it leaves nothing to score against
        return np.full(len(images), -np.inf if exclude_labels is not None else 3.0)

    scores = negative_top1_scores(top1, references=refs, reference_labels=["a", "a"], generated=2)
    assert scores[IMPOSTORS].size == 0 and scores[GENERATED].tolist() == [3.0, 3.0]
    assert calibrate_sources(scores, 0.01).deciding_source == GENERATED

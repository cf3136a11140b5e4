import numpy as np
import pytest

from muselens.core.metrics import calibrate_threshold
from muselens.core.metrics.threshold import (AT_TARGET_FAR, DISTRACTORS, EQUAL_ERROR, GENERATED, GENUINE,
                                                IMPOSTORS, SourceThreshold, calibrate_sources,
                                                equal_error_threshold, impostor_scores, negative_scores,
                                                split_view_scores)


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
    assert set(scores) == {IMPOSTORS, GENERATED, GENUINE}
    assert scores[IMPOSTORS].shape == scores[GENUINE].shape == (4,) and scores[GENERATED].shape == (3,)
    again = negative_scores(describe, gallery, labels, references=refs, reference_labels=labels,
                            generated=3, seed=0)
    np.testing.assert_array_equal(scores[IMPOSTORS], again[IMPOSTORS])  # a function of the seed
    cal = calibrate_sources(scores, 0.01)
    assert -1.0 <= cal.value <= 1.0


def test_pairwise_entry_point_gives_what_negative_scores_gives_for_descriptors():
    """The same views and generated photos, whatever scores them: here descriptors, brute force."""
    from muselens.core.metrics.threshold import negative_top1_scores

    rng = np.random.default_rng(2)
    refs = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(3)]

    def describe(images):
        return _unit(np.stack([im[::8, ::8].reshape(-1)[:24] for im in images]).astype(np.float32) + 1.0)

    gallery, labels = describe(refs), np.array(["a", "b", "c"])
    distractors = describe([rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2)])

    def score_columns(images):  # brute force, one pair at a time
        d = describe(images)
        return np.array([[float(d[i] @ gallery[j]) for j in range(3)] for i in range(len(d))])

    expected = negative_scores(describe, gallery, labels, references=refs, reference_labels=labels,
                               distractors=distractors, generated=2, seed=3)
    got = negative_top1_scores(score_columns, labels, references=refs, reference_labels=labels,
                               distractor_scores=(distractors @ gallery.T).max(axis=1), generated=2, seed=3)
    assert set(got) == set(expected) == {DISTRACTORS, IMPOSTORS, GENERATED, GENUINE}
    for source in got:
        np.testing.assert_allclose(got[source], expected[source], rtol=1e-5)


def test_pairwise_scores_are_calibrated_without_clipping():
    from muselens.core.metrics.threshold import calibrate_source_scores

    inliers = {IMPOSTORS: np.arange(4.0, 104.0), GENERATED: np.arange(0.0, 10.0)}
    cal = calibrate_source_scores(inliers, 0.01)
    assert cal.value == calibrate_threshold(inliers[IMPOSTORS], 0.01) == 102.0  # 1 of 100 allowed above
    assert calibrate_sources(inliers, 0.01).value == 1.0  # the descriptor entry point clips to cosines


def test_pairwise_views_with_no_other_artwork_are_left_out():
    from muselens.core.metrics.threshold import negative_top1_scores

    refs = [np.full((32, 32, 3), 90, np.uint8)] * 2

    def score_columns(images):  # one artwork, two references: excluding it leaves nothing to score against
        return np.full((len(images), 2), 3.0)

    scores = negative_top1_scores(score_columns, ["a", "a"], references=refs, reference_labels=["a", "a"],
                                  generated=2)
    assert scores[IMPOSTORS].size == 0 and scores[GENERATED].tolist() == [3.0, 3.0]
    assert scores[GENUINE].tolist() == [3.0, 3.0]
    assert calibrate_sources(scores, 0.01).deciding_source == GENERATED


def test_split_view_scores_takes_the_best_of_other_artworks_and_of_its_own():
    scores = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.7]])
    imp, gen = split_view_scores(scores, ["a", "b"], ["a", "b", "b"])
    np.testing.assert_allclose(imp, [0.5, 0.1])
    np.testing.assert_allclose(gen, [0.9, 0.8])
    with pytest.raises(ValueError, match="2 views and 2 columns"):
        split_view_scores(scores, ["a", "b"], ["a", "b"])


def test_equal_error_threshold_is_where_the_two_error_rates_cross():
    neg = np.arange(100) / 100.0  # 0.00 .. 0.99
    pos = 0.5 + np.arange(100) / 100.0  # 0.50 .. 1.49
    t = equal_error_threshold(neg, pos)
    accepted, rejected = np.mean(neg > t), np.mean(pos <= t)
    assert rejected >= accepted and t == pytest.approx(0.74)  # 25 % of each side wrong
    below = max(x for x in np.concatenate([neg, pos]) if x < t)
    assert np.mean(pos <= below) < np.mean(neg > below)  # one score lower, the impostors still win
    assert equal_error_threshold([0.0, 0.1], [0.8, 0.9]) == pytest.approx(0.1)  # separated: at the top negative
    with pytest.raises(ValueError, match="negative and positive"):
        equal_error_threshold([], [0.5])


def test_impostor_views_are_capped_where_the_simulation_cannot_separate_artworks():
    """Impostor and genuine views overlapping (a real catalogue museum's phone views): the target
    alone would reject most of the museum's own photos; capped, both errors are equal."""
    rng = np.random.default_rng(0)
    imp, gen = rng.normal(0.6, 0.08, 400), rng.normal(0.75, 0.08, 400)
    walls = rng.normal(0.3, 0.05, 100)
    uncapped = calibrate_sources({IMPOSTORS: imp, GENERATED: walls}, 0.01)
    capped = calibrate_sources({IMPOSTORS: imp, GENERATED: walls, GENUINE: gen}, 0.01)
    assert np.mean(gen > uncapped.value) < 0.5  # what shipped before: most genuine views rejected
    assert capped.value < uncapped.value and capped.deciding_source == IMPOSTORS
    source = capped.sources[[s.source for s in capped.sources].index(IMPOSTORS)]
    assert source.rule == EQUAL_ERROR and source.at_target_far == pytest.approx(uncapped.value)
    assert abs(np.mean(imp > capped.value) - np.mean(gen <= capped.value)) < 0.01
    assert "capped at the equal error" in capped.describe()
    assert capped.to_dict()["sources"][0] == {"source": IMPOSTORS, "count": 400, "threshold": source.threshold,
                                               "rule": EQUAL_ERROR, "at_target_far": source.at_target_far}


def test_separable_views_and_real_or_generated_negatives_are_never_capped():
    rng = np.random.default_rng(1)
    imp, gen = rng.normal(0.3, 0.05, 300), rng.normal(0.9, 0.03, 300)
    cal = calibrate_sources({IMPOSTORS: imp, GENUINE: gen}, 0.01)
    assert cal.sources[0].rule == AT_TARGET_FAR and cal.value == pytest.approx(calibrate_threshold(imp, 0.01))
    high = rng.normal(0.8, 0.05, 300)  # distractors and generated photos scoring as high as genuine views
    cal = calibrate_sources({DISTRACTORS: high, GENERATED: high, GENUINE: rng.normal(0.8, 0.05, 300)}, 0.01)
    assert all(s.rule == AT_TARGET_FAR for s in cal.sources)
    assert cal.value == pytest.approx(calibrate_threshold(high, 0.01))


def test_a_source_record_says_its_rule_and_only_a_capped_one_carries_the_extra_keys():
    assert SourceThreshold(IMPOSTORS, 3, 0.5).to_dict() == {"source": IMPOSTORS, "count": 3, "threshold": 0.5}
    with pytest.raises(ValueError, match="unknown threshold rule"):
        SourceThreshold(IMPOSTORS, 3, 0.5, "median")
    with pytest.raises(ValueError, match="exactly when"):
        SourceThreshold(IMPOSTORS, 3, 0.5, EQUAL_ERROR)

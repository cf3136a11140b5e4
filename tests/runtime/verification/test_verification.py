"""Local features, homography verification and their store, on painted test images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from muselens.runtime.verification import (FeatureConfig, LocalFeatures, LocalFeatureStore, VerifyConfig,
                                           extract_features, verify)
from tests.paintings import painting, photographed


@pytest.mark.parametrize("kind", ["orb", "rootsift"])
def test_an_artwork_in_perspective_is_verified_with_its_outline(kind):
    config = FeatureConfig(kind=kind)
    art = painting(1)
    frame, truth = photographed(art, 1)
    result = verify(extract_features(frame, config), extract_features(art, config), config.norm,
                    keep_pairs=True)
    assert result.verified(VerifyConfig()) and result.inliers >= 30
    assert np.abs(result.outline - truth).max() < 8  # pixels of a 960-wide frame
    assert result.pairs.shape == (result.inliers, 4)


@pytest.mark.parametrize("kind", ["orb", "rootsift"])
def test_another_artwork_is_not_verified(kind):
    config = FeatureConfig(kind=kind)
    frame, _ = photographed(painting(1), 1)
    result = verify(extract_features(frame, config), extract_features(painting(2), config), config.norm)
    assert not result.verified(VerifyConfig())


@pytest.mark.parametrize("kind", ["orb", "rootsift"])
def test_ratio_matches_are_exactly_the_brute_force_matchers(kind):
    """The ratio test on batchDistance's two nearest neighbours keeps exactly the pairs that
    BFMatcher.knnMatch's DMatch objects keep (same neighbours, same ties)."""
    from muselens.runtime.verification.geometry import _ratio_matches

    config = FeatureConfig(kind=kind)
    frame = extract_features(photographed(painting(1), 1)[0], config)
    for reference in (extract_features(painting(1), config), extract_features(painting(2), config)):
        pairs = cv2.BFMatcher(config.norm).knnMatch(frame.descriptors, reference.descriptors, k=2)
        expected = [(m.queryIdx, m.trainIdx) for m, n in pairs if m.distance < 0.8 * n.distance]
        got = _ratio_matches(frame, reference, config.norm, 0.8)
        assert got.dtype == np.int64 and got.shape == (len(expected), 2)
        assert [tuple(p) for p in got.tolist()] == expected


def test_hamming_ratio_matches_equal_the_brute_force_matchers_where_distances_tie():
    """faiss's Hamming kNN may order tied neighbours differently from OpenCV's: on descriptors
    drawn from few distinct values (ties everywhere) the kept matches are still exactly BFMatcher's."""
    from muselens.runtime.verification.geometry import _ratio_matches

    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (100, 32), dtype=np.uint8)
    noisy = lambda n: palette[rng.integers(0, 100, n)] ^ np.packbits(rng.random((n, 256)) < 0.01, axis=1)  # noqa: E731
    query, reference = noisy(400), noisy(300)
    as_features = lambda d: LocalFeatures(rng.random((len(d), 2), dtype=np.float32), d, (64, 64))  # noqa: E731
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query, reference, k=2)
    assert sum(m.distance == n.distance for m, n in pairs) > 50  # ties are common here
    for ratio in (0.5, 0.8, 1.0):
        expected = [(m.queryIdx, m.trainIdx) for m, n in pairs if m.distance < ratio * n.distance]
        got = _ratio_matches(as_features(query), as_features(reference), cv2.NORM_HAMMING, ratio)
        assert len(expected) > 20 and [tuple(p) for p in got.tolist()] == expected


def test_a_flat_frame_has_no_features_and_verifies_nothing():
    config = FeatureConfig()
    flat = np.full((480, 640, 3), 90, np.uint8)
    features = extract_features(flat, config)
    assert len(features) == 0 and features.descriptors.shape == (0, 32) and features.size == (640, 480)
    assert verify(features, extract_features(painting(1), config), config.norm).inliers == 0


def test_features_are_in_the_given_images_pixels_whatever_the_extraction_size():
    art = painting(3, 720, 960)
    small = extract_features(art, FeatureConfig(max_side=320))
    assert small.size == (960, 720) and small.points[:, 0].max() > 320  # scaled back up
    assert (small.points >= 0).all() and (small.points[:, 0] < 960).all() and (small.points[:, 1] < 720).all()
    again = extract_features(art, FeatureConfig(max_side=320))
    np.testing.assert_array_equal(small.points, again.points)  # deterministic


def test_settings_and_inputs_are_checked():
    with pytest.raises(ValueError, match="unknown local feature kind 'surf'"):
        FeatureConfig(kind="surf")
    with pytest.raises(ValueError, match="count must be an int >= 16"):
        FeatureConfig(count=3)
    with pytest.raises(ValueError, match="image must be RGB uint8"):
        extract_features(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="ratio must be in"):
        VerifyConfig(ratio=1.5)
    orb, sift = extract_features(painting(1)), extract_features(painting(1), FeatureConfig(kind="rootsift"))
    with pytest.raises(ValueError, match="two different kinds"):
        verify(orb, sift, cv2.NORM_HAMMING)


def test_the_store_round_trips_without_pickle_and_refuses_inconsistent_arrays(tmp_path):
    config = FeatureConfig()
    features = [extract_features(painting(s), config) for s in range(3)]
    store = LocalFeatureStore.from_features(features, 32)
    path = tmp_path / "local_features.npz"
    store.save(path)
    loaded = LocalFeatureStore.load(path)
    assert len(loaded) == 3 and loaded.nbytes == store.nbytes
    for row, f in enumerate(features):
        got = loaded.features(row)
        np.testing.assert_array_equal(got.points, f.points)
        np.testing.assert_array_equal(got.descriptors, f.descriptors)
        assert got.size == f.size
    with pytest.raises(IndexError):
        loaded.features(3)
    bad = dict(np.load(path))
    bad["offsets"] = bad["offsets"][::-1].copy()
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ValueError, match="offsets must be int64"):
        LocalFeatureStore.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "objects.npz", points=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        LocalFeatureStore.load(tmp_path / "objects.npz")  # pickled arrays are never loaded
    empty = LocalFeatureStore.from_features([LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8),
                                                           (10, 10))], 32)
    assert len(empty) == 1 and len(empty.features(0)) == 0

"""SIFT baseline: RootSIFT, ratio test against brute force, homography verification, score matrix."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from muselens.training.baselines.sift import (
    DESCRIPTOR_SIZE,
    SiftConfig,
    SiftFeatures,
    SiftRetrieval,
    extract_features,
    extract_sift,
    _plausible,
    homography_inliers,
    match_inliers,
    ratio_matches,
    resize_long_side,
    root_sift,
    sift_scores,
)

# A mild perspective view: what a visitor's photo of a painting looks like after cropping.
KNOWN_H = np.array([[0.85, 0.08, 25.0], [-0.05, 0.9, 20.0], [2e-4, 1e-4, 1.0]])


def textured(seed: int, h: int = 300, w: int = 400) -> np.ndarray:
    """Seeded RGB texture with structure at several scales, rich in SIFT keypoints."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for step in (3, 9, 27):
        noise = rng.random((h // step + 2, w // step + 2, 3)).astype(np.float32)
        img += cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)[:h, :w] / 3
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def warped(image: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    out = cv2.warpPerspective(image, KNOWN_H, (w, h)).astype(np.float32)
    return np.clip(out + rng.normal(0, 6, out.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scene() -> dict[str, SiftFeatures]:
    base = textured(1)
    return {
        "base": extract_sift(base),
        "warped": extract_sift(warped(base)),
        "unrelated": extract_sift(textured(2)),
    }


def random_root_sift(rng: np.random.Generator, n: int) -> SiftFeatures:
    desc = root_sift(rng.random((n, DESCRIPTOR_SIZE)) ** 4)  # peaky, like real SIFT histograms
    return SiftFeatures(rng.uniform(0, 300, (n, 2)).astype(np.float32), desc)


# --- RootSIFT and features ---------------------------------------------------------------------


def test_root_sift_matches_formula_and_has_unit_norm() -> None:
    rng = np.random.default_rng(0)
    d = rng.integers(0, 256, (7, DESCRIPTOR_SIZE)).astype(np.float32)
    out = root_sift(d)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.sqrt(d / d.sum(axis=1, keepdims=True)), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (-np.ones((2, DESCRIPTOR_SIZE)), ValueError),
        (np.zeros((2, DESCRIPTOR_SIZE)), ValueError),
        (np.ones((2, 64)), ValueError),
        (np.ones(DESCRIPTOR_SIZE), ValueError),
        (np.full((1, DESCRIPTOR_SIZE), np.nan), ValueError),
        (np.array([["a"] * DESCRIPTOR_SIZE]), TypeError),
    ],
)
def test_root_sift_refuses_non_histograms(bad: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        root_sift(bad)


def test_extracted_descriptors_are_root_sift(scene: dict[str, SiftFeatures]) -> None:
    f = scene["base"]
    assert 100 < len(f) <= 1000
    assert f.keypoints.dtype == np.float32 and f.keypoints.shape == (len(f), 2)
    assert f.descriptors.dtype == np.float32 and f.descriptors.shape == (len(f), DESCRIPTOR_SIZE)
    assert np.all(f.descriptors >= 0)
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, rtol=1e-5)


def test_extraction_caps_features_and_resizes() -> None:
    big = cv2.resize(textured(3), (1200, 900), interpolation=cv2.INTER_CUBIC)
    f = extract_sift(big, max_side=320, nfeatures=150)
    assert len(f) == 150  # exactly the cap, although OpenCV keeps ties at its cut
    assert f.keypoints[:, 0].max() < 320 and f.keypoints[:, 1].max() < 240


def test_cap_keeps_the_strongest() -> None:
    """The capped set is the head of the uncapped one, which is sorted by response."""
    image = textured(4)
    few, many = extract_sift(image, nfeatures=50), extract_sift(image, nfeatures=None)
    assert len(many) > 500
    head = {tuple(p) for p in many.keypoints[:50].tolist()}
    # Compared as sets of positions: one point can carry several orientations.
    assert {tuple(p) for p in few.keypoints.tolist()} == head


def test_subsample_strides_evenly() -> None:
    rng = np.random.default_rng(0)
    f = random_root_sift(rng, 10)
    np.testing.assert_array_equal(f.subsample(4).descriptors, f.descriptors[[0, 3, 6, 9]])
    np.testing.assert_array_equal(f.subsample(1).descriptors, f.descriptors[:1])
    assert f.subsample(10) is f and f.subsample(99) is f
    with pytest.raises(ValueError, match="k must be"):
        f.subsample(0)


def test_grayscale_and_rgb_inputs_agree() -> None:
    rgb = textured(5)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    a, b = extract_sift(rgb), extract_sift(gray)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.descriptors, b.descriptors)


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (np.zeros((10, 10, 3), np.float32), TypeError),
        (np.zeros((10, 10, 4), np.uint8), ValueError),
        (np.zeros((10, 10, 3, 1), np.uint8), ValueError),
        (np.zeros((0, 10, 3), np.uint8), ValueError),
        ([[0, 1], [2, 3]], TypeError),
    ],
)
def test_extraction_refuses_bad_images(image: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        extract_sift(image)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"max_side": 0}, ValueError), ({"nfeatures": 0}, ValueError), ({"nfeatures": 2.5}, TypeError)],
)
def test_extraction_refuses_bad_settings(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        extract_sift(textured(6, 40, 40), **kwargs)  # type: ignore[arg-type]


def test_resize_long_side_shrinks_never_enlarges() -> None:
    img = np.zeros((300, 1000, 3), np.uint8)
    assert resize_long_side(img, 640).shape == (192, 640, 3)
    assert resize_long_side(img, 2000) is img


@pytest.mark.parametrize(
    ("keypoints", "descriptors", "error"),
    [
        (np.zeros((3, 2), np.float64), np.zeros((3, DESCRIPTOR_SIZE), np.float32), TypeError),
        (np.zeros((3, 3), np.float32), np.zeros((3, DESCRIPTOR_SIZE), np.float32), ValueError),
        (np.zeros((3, 2), np.float32), np.zeros((3, 64), np.float32), ValueError),
        (np.zeros((3, 2), np.float32), np.zeros((4, DESCRIPTOR_SIZE), np.float32), ValueError),
        ([[0.0, 0.0]], np.zeros((1, DESCRIPTOR_SIZE), np.float32), TypeError),
    ],
)
def test_features_validate(keypoints: object, descriptors: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        SiftFeatures(keypoints, descriptors)  # type: ignore[arg-type]


# --- ratio test ----------------------------------------------------------------------------------


def brute_force_ratio(query: SiftFeatures, ref: SiftFeatures, ratio: float) -> set[tuple[int, int]]:
    """Lowe's test as OpenCV's brute-force matcher does it."""
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(query.descriptors, ref.descriptors, k=2)
    return {(m.queryIdx, m.trainIdx) for m, n in knn if m.distance < ratio * n.distance}


@pytest.mark.parametrize("ratio", [0.6, 0.8, 0.95])
def test_ratio_matches_equal_brute_force(ratio: float) -> None:
    rng = np.random.default_rng(1)
    ref = random_root_sift(rng, 300)
    # Queries: copies of reference descriptors under growing noise, plus unrelated ones.
    noise = np.geomspace(1e-4, 0.3, 120)[:, None] * rng.random((120, DESCRIPTOR_SIZE))
    near = root_sift(ref.descriptors[:120] ** 2 + noise)
    query = SiftFeatures(
        np.zeros((200, 2), np.float32), np.concatenate([near, random_root_sift(rng, 80).descriptors])
    )
    got = ratio_matches(query, ref, ratio=ratio, one_to_one=False)
    assert got.dtype == np.int64 and got.shape[1] == 2
    expected = brute_force_ratio(query, ref, ratio)
    assert 10 < len(expected) < 190
    assert {tuple(p) for p in got.tolist()} == expected


def test_one_to_one_keeps_the_closest_query_per_reference() -> None:
    rng = np.random.default_rng(2)
    ref = random_root_sift(rng, 50)
    target = ref.descriptors[7]
    far = root_sift(target[None] ** 2 + 0.002)[0]  # both query features are nearest to reference 7,
    close = root_sift(target[None] ** 2 + 0.0005)[0]  # the second one more so
    query = SiftFeatures(np.zeros((3, 2), np.float32), np.stack([far, close, ref.descriptors[3]]))
    loose = ratio_matches(query, ref, one_to_one=False)
    assert loose.tolist() == [[0, 7], [1, 7], [2, 3]]
    assert ratio_matches(query, ref).tolist() == [[1, 7], [2, 3]]


def test_one_to_one_result_is_a_subset_with_unique_references() -> None:
    rng = np.random.default_rng(3)
    ref = random_root_sift(rng, 40)
    picks = rng.integers(0, 10, 200)  # many queries pile onto 10 references
    query = SiftFeatures(
        np.zeros((200, 2), np.float32),
        root_sift(ref.descriptors[picks] ** 2 + rng.random((200, DESCRIPTOR_SIZE)) * 0.003),
    )
    loose = {tuple(p) for p in ratio_matches(query, ref, one_to_one=False).tolist()}
    strict = ratio_matches(query, ref)
    assert len(np.unique(strict[:, 1])) == len(strict)
    assert {tuple(p) for p in strict.tolist()} <= loose
    assert len({r for _, r in loose}) == len(strict)  # every matched reference keeps one match


def test_ratio_matches_with_too_few_features_is_empty() -> None:
    rng = np.random.default_rng(4)
    some = random_root_sift(rng, 20)
    assert ratio_matches(SiftFeatures.empty(), some).shape == (0, 2)
    assert ratio_matches(some, SiftFeatures.empty()).shape == (0, 2)
    assert ratio_matches(some, some.subsample(1)).shape == (0, 2)  # no second neighbour: no ratio


@pytest.mark.parametrize(
    ("ratio", "error"),
    [(0.0, ValueError), (1.5, ValueError), (float("nan"), ValueError), ("0.8", TypeError)],
)
def test_ratio_is_validated(ratio: object, error: type[Exception]) -> None:
    rng = np.random.default_rng(5)
    f = random_root_sift(rng, 5)
    with pytest.raises(error):
        ratio_matches(f, f, ratio=ratio)  # type: ignore[arg-type]


def test_ratio_matches_refuses_non_features() -> None:
    f = SiftFeatures.empty()
    with pytest.raises(TypeError, match="two SiftFeatures"):
        ratio_matches(f, np.zeros((3, DESCRIPTOR_SIZE), np.float32))  # type: ignore[arg-type]


# --- geometric verification ----------------------------------------------------------------------


def project(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(points[None].astype(np.float64), h)[0].astype(np.float32)


def test_homography_inliers_count_exact_correspondences() -> None:
    rng = np.random.default_rng(6)
    src = rng.uniform(0, 400, (40, 2)).astype(np.float32)
    dst = project(KNOWN_H, src)
    dst[30:] += rng.uniform(60, 120, (10, 2)).astype(np.float32) * rng.choice([-1, 1], (10, 2))
    assert homography_inliers(src, dst) == 30


@pytest.mark.parametrize(
    "h",
    [
        np.diag([-1.0, 1.0, 1.0]) + np.array([[0, 0, 400.0], [0, 0, 0], [0, 0, 0]]),  # mirror image
        np.diag([20.0, 20.0, 1.0]),  # 400x area change
        np.diag([0.04, 0.04, 1.0]),
    ],
)
def test_implausible_homographies_score_zero(h: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    src = rng.uniform(0, 400, (30, 2)).astype(np.float32)
    assert homography_inliers(src, project(h, src)) == 0
    assert homography_inliers(src, project(h, src), max_scale_change=30.0) == (0 if h[0, 0] < 0 else 30)


def test_plausibility_rejects_points_at_or_beyond_the_horizon() -> None:
    h = np.array([[1.0, 0, 0], [0, 1.0, 0], [-1 / 200, 0, 1.0]])  # w = 1 - x / 200: horizon at x = 200
    assert _plausible(h, np.array([[10.0, 5.0], [150.0, 90.0]]), 10.0)
    assert not _plausible(h, np.array([[10.0, 5.0], [200.0, 90.0]]), 10.0)  # on the horizon
    assert not _plausible(h, np.array([[10.0, 5.0], [300.0, 90.0]]), 10.0)  # across it
    assert _plausible(-np.eye(3), np.array([[10.0, 5.0]]), 10.0)  # the scale of H, sign included, is free


def test_collapsed_matches_score_zero() -> None:
    """Many query points onto one reference point: a degenerate model, not a match."""
    rng = np.random.default_rng(8)
    src = rng.uniform(0, 400, (30, 2)).astype(np.float32)
    assert homography_inliers(src, np.tile(np.float32([[100, 50]]), (30, 1))) == 0


def test_homography_inliers_needs_four_and_validates() -> None:
    pts = np.float32([[0, 0], [1, 0], [0, 1]])
    assert homography_inliers(pts, pts) == 0
    with pytest.raises(ValueError, match="shape"):
        homography_inliers(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="ransac_threshold"):
        homography_inliers(pts, pts, ransac_threshold=0)
    with pytest.raises(ValueError, match="max_scale_change"):
        homography_inliers(pts, pts, max_scale_change=0.5)


def test_warped_copy_has_many_inliers_unrelated_few(scene: dict[str, SiftFeatures]) -> None:
    assert match_inliers(scene["warped"], scene["base"]) > 20
    assert match_inliers(scene["base"], scene["warped"]) > 20
    assert match_inliers(scene["warped"], scene["unrelated"]) < 8


def test_match_inliers_is_deterministic(scene: dict[str, SiftFeatures]) -> None:
    runs = {match_inliers(scene["warped"], scene["base"]) for _ in range(3)}
    assert len(runs) == 1


def test_flat_image_gives_zero_inliers(scene: dict[str, SiftFeatures]) -> None:
    flat = extract_sift(np.full((200, 300, 3), 128, np.uint8))
    assert len(flat) == 0
    assert match_inliers(flat, scene["base"]) == 0
    assert match_inliers(scene["base"], flat) == 0
    assert match_inliers(flat, flat) == 0
    assert len(extract_sift(np.zeros((1, 1), np.uint8))) == 0


# --- score matrix --------------------------------------------------------------------------------


GALLERY_FEATURES = 300  # fewer than the default 1000 keeps the matrix tests fast


@pytest.fixture(scope="module")
def gallery() -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    refs = [textured(10 + i, 240, 320) for i in range(5)]
    truth = [3, 0, 4]
    queries = [warped(refs[t], seed=t) for t in truth]
    return queries, refs, truth


@pytest.fixture(scope="module")
def gallery_features(gallery: tuple) -> tuple[list[SiftFeatures], list[SiftFeatures], list[int]]:
    queries, refs, truth = gallery
    qf = extract_features(queries, nfeatures=GALLERY_FEATURES, progress=False)
    return qf, extract_features(refs, nfeatures=GALLERY_FEATURES, progress=False), truth


def test_sift_scores_rank_the_true_reference_first(gallery: tuple, gallery_features: tuple) -> None:
    queries, refs, truth = gallery
    qf, rf, _ = gallery_features
    cfg = SiftConfig(shortlist=None, nfeatures=GALLERY_FEATURES)
    scores = sift_scores(queries, refs, cfg, progress=False)
    assert scores.shape == (3, 5) and scores.dtype == np.float64
    assert scores.argmax(axis=1).tolist() == truth
    # Integer part: the inlier count of match_inliers.
    expected = [[match_inliers(q, r) for r in rf] for q in qf]
    np.testing.assert_array_equal(np.floor(scores), expected)
    assert np.all(scores - np.floor(scores) < 1)


def test_shortlist_tiers_and_tie_break(gallery_features: tuple) -> None:
    qf, rf, truth = gallery_features
    short = SiftRetrieval(rf, SiftConfig(shortlist=2, shortlist_features=64)).score_all(qf, progress=False)
    full = SiftRetrieval(rf, SiftConfig(shortlist=None)).score_all(qf, progress=False)
    assert short.argmax(axis=1).tolist() == truth
    verified = short >= 0
    assert verified.sum(axis=1).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(short[verified], full[verified])  # the shortlist is verified in full
    for i, q in enumerate(qf):
        probe = q.subsample(64)
        for j, r in enumerate(rf):
            if not verified[i, j]:  # below the shortlist, ordered by the cheap stage's count
                assert short[i, j] == -1 + len(ratio_matches(probe, r)) / (len(probe) + 1)
    plain = SiftRetrieval(rf, SiftConfig(shortlist=2, tie_break=False)).score_all(qf, progress=False)
    np.testing.assert_array_equal(plain[plain >= 0], np.floor(full)[plain >= 0])
    assert np.all(plain[plain < 0] == -1) and (plain < 0).sum() == 3 * 3


def test_cheap_stage_with_all_features_ranks_like_full_matching(gallery_features: tuple) -> None:
    qf, rf, _ = gallery_features
    s = SiftRetrieval(rf, SiftConfig(shortlist=2, shortlist_features=None)).score_all(qf, progress=False)
    full = SiftRetrieval(rf, SiftConfig(shortlist=None)).score_all(qf, progress=False)
    for q, row, full_row in zip(qf, s, full):
        counts = [len(ratio_matches(q, r)) for r in rf]
        assert row.argmax() == int(np.argmax(counts))
        np.testing.assert_array_equal(row[row >= 0], full_row[row >= 0])  # reused matches, same scores


def test_empty_gallery_and_empty_query() -> None:
    index = SiftRetrieval([], SiftConfig())
    assert index.score_all([SiftFeatures.empty()], progress=False).shape == (1, 0)
    rng = np.random.default_rng(9)
    index = SiftRetrieval([random_root_sift(rng, 10), SiftFeatures.empty()], SiftConfig(shortlist=None))
    assert index.score_all([SiftFeatures.empty()], progress=False).tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"shortlist": 0}, ValueError),
        ({"shortlist_features": -3}, ValueError),
        ({"shortlist": 2.0}, TypeError),
        ({"ratio": 1.2}, ValueError),
        ({"ransac_threshold": -1.0}, ValueError),
        ({"max_scale_change": 0.9}, ValueError),
        ({"nfeatures": True}, TypeError),
        ({"tie_break": 1}, TypeError),
    ],
)
def test_config_is_validated(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        SiftConfig(**kwargs)  # type: ignore[arg-type]


def test_retrieval_refuses_wrong_types() -> None:
    with pytest.raises(TypeError, match="reference_features"):
        SiftRetrieval([np.zeros((3, 128), np.float32)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="config"):
        SiftRetrieval([], config={"shortlist": 5})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query"):
        SiftRetrieval([]).score_features(np.zeros((3, 128), np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers"):
        extract_features([], workers=0)


def test_worker_pool_gives_the_same_features() -> None:
    images = [textured(20 + i, 120, 160) for i in range(3)] + [np.zeros((30, 30, 3), np.uint8)]
    serial = extract_features(images, progress=False)
    pooled = extract_features(iter(images), workers=2, progress=False)
    assert len(pooled) == len(serial) == 4
    for a, b in zip(serial, pooled):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        np.testing.assert_array_equal(a.descriptors, b.descriptors)


def test_scoring_pool_gives_the_same_scores(gallery_features: tuple) -> None:
    qf, rf, _ = gallery_features
    index = SiftRetrieval(rf, SiftConfig(shortlist=3, shortlist_features=64))
    serial = index.score_all(qf, progress=False)
    np.testing.assert_array_equal(index.score_all(qf, workers=2, progress=False), serial)
    with pytest.raises(TypeError, match="query_features"):
        index.score_all([qf[0], "image.jpg"], progress=False)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="workers"):
        index.score_all(qf, workers=0)


def test_worker_errors_reach_the_caller() -> None:
    with pytest.raises(TypeError, match="uint8"):
        extract_features([np.zeros((20, 20, 3), np.float32)], workers=2, progress=False)


def test_module_does_not_import_torch() -> None:
    code = "import sys, muselens.training.baselines.sift; sys.exit(int('torch' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

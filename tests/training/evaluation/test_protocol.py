from __future__ import annotations

import cv2
import numpy as np
import pytest

from muselens.core.data.museum_dataset import MuseumDataset
from muselens.training.evaluation.methods import DescriptorMethod, PairwiseMethod
from muselens.training.evaluation.protocol import EvalOptions, evaluate_method, max_per_instance

COLOURS = {"red": (250, 10, 10), "green": (10, 250, 10), "blue": (10, 10, 250)}


def _solid(path, rgb, jitter):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((24, 32, 3), rgb, np.uint8)[..., ::-1].copy()  # BGR for OpenCV
    image[0, 0] = jitter
    cv2.imwrite(str(path), image)


@pytest.fixture
def colour_museum(tmp_path):
    root = tmp_path / "colours"
    for i, (name, rgb) in enumerate(COLOURS.items()):
        for k in range(2):
            _solid(root / "references" / name / f"r{k}.png", rgb, k)
        _solid(root / "queries" / name / "q.png", rgb, 9)
    for k in range(4):
        _solid(root / "distractors" / f"d{k}.png", (128, 128, 128), k)
    return root


def mean_colour(images):
    """A descriptor that is perfect on the colour museum: the mean RGB, L2-normalised."""
    d = np.stack([im.reshape(-1, 3).mean(0) for im in images]).astype(np.float32)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def test_a_perfect_descriptor_scores_perfectly(colour_museum):
    ds = MuseumDataset.load(colour_museum)
    result = evaluate_method(ds, DescriptorMethod("colour", mean_colour), progress=False)
    assert result.retrieval["mp_at_1"] == 1.0 and result.retrieval["map"] == 1.0
    assert result.counts == {"references": 6, "gallery": 6, "queries": 3, "distractors": 4,
                             "orphan_queries": 0, "skipped": 0}
    assert result.clustering["1"]["nmi"] == pytest.approx(1.0)
    # grey distractors sit at cosine ~0.6 from the pure colours, queries at 1.0: separable
    assert result.open_set["auroc"] == 1.0
    assert result.query_correct.all()


def test_instance_averaging_qe_and_dba_change_the_gallery(colour_museum):
    ds = MuseumDataset.load(colour_museum)
    result = evaluate_method(ds, DescriptorMethod("colour", mean_colour),
                             EvalOptions(instance_avg=True, qe=1, dba=1), progress=False)
    assert result.counts["gallery"] == 3 and result.counts["references"] == 6
    assert result.name == "colour+ia+qe1+dba1"
    assert result.retrieval["mp_at_1"] == 1.0


def test_a_corrupt_image_is_skipped_and_reported(colour_museum):
    bad = colour_museum / "queries" / "red" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ds = MuseumDataset.load(colour_museum)
    result = evaluate_method(ds, DescriptorMethod("colour", mean_colour), progress=False)
    assert result.counts["queries"] == 3 and result.counts["skipped"] == 1
    assert result.skipped[0]["path"] == str(bad)


def test_pairwise_methods_refuse_descriptor_only_options(colour_museum):
    method = PairwiseMethod("sift", config=None)
    with pytest.raises(ValueError, match="query expansion and DBA need a descriptor method"):
        evaluate_method(MuseumDataset.load(colour_museum), method, EvalOptions(qe=1), progress=False)


def test_max_per_instance_against_loops():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4, 7))
    labels = np.array(["b", "a", "b", "c", "a", "a", "c"])
    out, ids = max_per_instance(scores, labels)
    assert ids.tolist() == ["a", "b", "c"]
    for q in range(4):
        for j, i in enumerate(ids):
            assert out[q, j] == max(scores[q, g] for g in range(7) if labels[g] == i)


# -- a museum with one reference per artwork ---------------------------------------------------------

@pytest.fixture(scope="module")
def random_gem():
    from muselens.training.evaluation.methods import build_method

    return build_method("im-gem", size=64, pretrained=False)


def _described(records, method):
    from muselens.core.data.images import read_image

    return method.extract([read_image(r.path) for r in records])


def test_clustering_that_cannot_run_is_reported_and_the_other_count_still_runs(one_reference_museum, random_gem):
    """5 artworks x (1 reference + 1 query) = 10 samples: 15 clusters cannot be made, 5 can."""
    from muselens.core.metrics import kmeans_assign, nmi, pairwise_f1

    ds = MuseumDataset.load(one_reference_museum)
    result = evaluate_method(ds, random_gem, progress=False)
    three = result.clustering["3"]
    assert three["nmi"] is None and three["f1"] is None and three["n_clusters"] == 15
    assert three["skipped"] == "cannot make 15 clusters from 10 samples"
    # The one-cluster-per-artwork run against k-means done here on the same descriptors.
    x = _described([*ds.references, *ds.queries], random_gem)
    y = np.array([r.instance_id for r in [*ds.references, *ds.queries]])
    assigned = kmeans_assign(x, 5, seed=0)
    one = result.clustering["1"]
    assert "skipped" not in one and one["n_clusters"] == 5
    assert one["nmi"] == pytest.approx(nmi(assigned, y)) and one["f1"] == pytest.approx(pairwise_f1(assigned, y))
    assert result.counts["distractors"] == 0 and result.open_set is None


def test_a_one_artwork_museum_says_why_it_has_no_clustering(tmp_path):
    root = tmp_path / "museum"
    _solid(root / "references" / "red" / "r.png", COLOURS["red"], 0)
    _solid(root / "queries" / "red" / "q.png", COLOURS["red"], 1)
    result = evaluate_method(MuseumDataset.load(root), DescriptorMethod("colour", mean_colour), progress=False)
    assert result.retrieval["mp_at_1"] == 1.0
    for m in ("1", "3"):
        assert result.clustering[m]["nmi"] is None
        assert result.clustering[m]["skipped"] == "one artwork: clustering needs at least two"


# -- open set at the shipped threshold ---------------------------------------------------------------

def _unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force_rates(threshold, gallery, ids, queries, query_labels, unknown, distractors):
    """Counts (low, high) per population accepted at ``threshold``, from pair-by-pair dot products;
    a score within 1e-6 of the threshold may go either way (float ties)."""
    def top1(x):
        scores = [[float(np.dot(v, g)) for g in gallery] for v in x]
        return [(max(s), ids[int(np.argmax(s))]) for s in scores]

    def count(items, ok=lambda i: True):
        low = sum(1 for i, (s, _) in enumerate(items) if s >= threshold + 1e-6 and ok(i))
        high = sum(1 for i, (s, _) in enumerate(items) if s >= threshold - 1e-6 and ok(i))
        return low, high

    q = top1(queries)
    return {"correct": count(q, lambda i: q[i][1] == query_labels[i]),
            "wrong": count(q, lambda i: q[i][1] != query_labels[i]),
            "unknown": count(top1(unknown)), "distractors": count(top1(distractors))}


def _averaged_gallery(ds, method):
    """One row per artwork: the mean of its references' descriptors, re-normalised, by loops."""
    refs = _described(ds.references, method)
    labels = [r.instance_id for r in ds.references]
    ids = sorted(set(labels))
    rows = [_unit_rows(np.mean([refs[k] for k in range(len(labels)) if labels[k] == i], axis=0)[None])[0] for i in ids]
    return np.stack(rows), ids


def _within(rate, n, bounds):
    assert bounds[0] <= round(rate * n) <= bounds[1], (rate, n, bounds)


def test_shipped_threshold_and_rates_match_a_brute_force_recomputation(museum_with_distractors, unknown_folder,
                                                                        random_gem):
    from muselens.core.data.images import read_image
    from muselens.core.metrics.threshold import calibrate_sources, negative_scores
    from muselens.training.evaluation.protocol import GivenThreshold, unknown_images

    ds = MuseumDataset.load(museum_with_distractors)
    unknown = unknown_images(unknown_folder)
    result = evaluate_method(ds, random_gem, EvalOptions(clustering=False), progress=False, unknown=unknown)
    shipped = result.shipped

    ref_labels = [r.instance_id for r in ds.references]
    gallery, ids = _averaged_gallery(ds, random_gem)
    queries = _described(ds.queries, random_gem)
    distractors = _described(ds.distractors, random_gem)
    unknown_d = random_gem.extract([read_image(p) for p in unknown])
    # The threshold export would ship: the same calibration on the same gallery.
    negatives = negative_scores(random_gem.extract, gallery, ids, references=[read_image(r.path) for r in ds.references],
                                reference_labels=ref_labels, distractors=distractors)
    expected = calibrate_sources(negatives, 0.01)
    assert shipped["threshold"] == pytest.approx(expected.value, abs=1e-6)
    assert shipped["set_by"] == "calibrated" and shipped["calibration"]["target_far"] == 0.01
    assert {s["source"] for s in shipped["calibration"]["sources"]} == {"distractors", "impostor-views",
                                                                        "generated-non-artwork"}
    assert "calibrated as export does" in shipped["how"]

    # The calibrated threshold rejects nearly everything a random network sees; a given threshold at
    # the median top-1 score accepts part of each population, so every count is checked on both.
    pooled = np.concatenate([x @ gallery.T for x in (queries, unknown_d, distractors)]).max(axis=1)
    median = GivenThreshold(float(np.median(pooled)), "the median top-1 score")
    again = evaluate_method(ds, random_gem, EvalOptions(clustering=False), progress=False, unknown=unknown,
                            threshold=median).shipped
    assert 0 < again["correct_accept_rate"] + again["wrong_accept_rate"] + again["unknown_far"] < 3
    for got in (shipped, again):
        counts = _brute_force_rates(got["threshold"], gallery, ids, queries, [r.instance_id for r in ds.queries],
                                    unknown_d, distractors)
        assert (got["n_queries"], got["n_unknown"], got["n_distractors"]) == (5, 4, 3)
        _within(got["correct_accept_rate"], 5, counts["correct"])
        _within(got["wrong_accept_rate"], 5, counts["wrong"])
        _within(got["unknown_far"], 4, counts["unknown"])
        _within(got["distractor_far"], 3, counts["distractors"])


def test_a_given_threshold_is_used_as_is(museum_with_distractors, unknown_folder, random_gem):
    from muselens.core.data.images import read_image
    from muselens.training.evaluation.protocol import GivenThreshold, unknown_images

    ds = MuseumDataset.load(museum_with_distractors)
    unknown = unknown_images(unknown_folder)
    # Halfway between the 2nd and 3rd best unknown scores: exactly 2 of the 4 are accepted.
    gallery, _ = _averaged_gallery(ds, random_gem)
    top = np.sort((random_gem.extract([read_image(p) for p in unknown]) @ gallery.T).max(axis=1))[::-1]
    value = float((top[1] + top[2]) / 2)
    given = GivenThreshold(value, "bundle manifest", {"value": value})
    result = evaluate_method(ds, random_gem, EvalOptions(clustering=False), progress=False, unknown=unknown,
                             threshold=given)
    shipped = result.shipped
    assert shipped["threshold"] == value and shipped["set_by"] == "given" and shipped["how"] == "bundle manifest"
    assert shipped["unknown_far"] == 0.5 and shipped["calibration"] == {"value": value}


def test_without_unknown_photos_nothing_is_calibrated(museum_with_distractors, random_gem):
    result = evaluate_method(MuseumDataset.load(museum_with_distractors), random_gem, EvalOptions(clustering=False),
                             progress=False)
    assert result.shipped is None and "shipped_s" not in result.timing


def test_sift_threshold_is_calibrated_on_its_own_inlier_counts(museum_with_distractors, unknown_folder):
    """Pairwise scores: the same negatives, scored by SIFT here pair by pair, and no [-1, 1] clipping."""
    from muselens.core.data.images import read_image
    from muselens.core.metrics.threshold import calibrate_source_scores, negative_top1_scores
    from muselens.training.baselines.sift import SiftConfig, sift_scores
    from muselens.training.evaluation.protocol import unknown_images

    config = SiftConfig(max_side=160)
    ds = MuseumDataset.load(museum_with_distractors)
    unknown = unknown_images(unknown_folder)
    result = evaluate_method(ds, PairwiseMethod("sift", config), EvalOptions(clustering=False), progress=False,
                             unknown=unknown)
    shipped = result.shipped

    refs = [read_image(r.path) for r in ds.references]
    ref_labels = np.array([r.instance_id for r in ds.references])

    def score_columns(images):
        return sift_scores(images, refs, config, progress=False)

    def top1(images):
        return score_columns(images).max(axis=1)

    d_top1 = top1([read_image(r.path) for r in ds.distractors])
    expected = calibrate_source_scores(negative_top1_scores(score_columns, ref_labels, references=refs,
                                                            reference_labels=ref_labels, distractor_scores=d_top1),
                                       0.01)
    assert shipped["threshold"] == pytest.approx(expected.value)
    assert shipped["calibration"] == expected.to_dict()
    q = sift_scores([read_image(r.path) for r in ds.queries], refs, config, progress=False)
    q_labels = np.array([r.instance_id for r in ds.queries])
    accepted = q.max(axis=1) >= expected.value
    right = ref_labels[q.argmax(axis=1)] == q_labels
    assert shipped["correct_accept_rate"] == pytest.approx(np.mean(accepted & right))
    u = top1([read_image(p) for p in unknown])
    assert shipped["unknown_far"] == pytest.approx(np.mean(u >= expected.value))
    assert shipped["distractor_far"] == pytest.approx(np.mean(d_top1 >= expected.value))


def test_unknown_folder_must_hold_images(tmp_path):
    from muselens.training.evaluation.protocol import unknown_images

    with pytest.raises(ValueError, match="is not a folder"):
        unknown_images(tmp_path / "nope")
    (tmp_path / "sub").mkdir()
    _solid(tmp_path / "sub" / "deep" / "x.png", (1, 2, 3), 0)
    (tmp_path / "sub" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no images directly inside"):
        unknown_images(tmp_path / "sub")
    _solid(tmp_path / "sub" / "b.JPG", (1, 2, 3), 0)
    _solid(tmp_path / "sub" / "a.png", (1, 2, 3), 0)
    assert [p.name for p in unknown_images(tmp_path / "sub")] == ["a.png", "b.JPG"]

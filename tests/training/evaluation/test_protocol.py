from __future__ import annotations

import cv2
import numpy as np
import pytest

from muselens.runtime.data.museum import MuseumDataset
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

"""Gallery search against brute force, exact and with FAISS."""

from __future__ import annotations

import numpy as np
import pytest

from muselens.runtime.bundle import Gallery
from muselens.runtime.recognition.search import GallerySearch, faiss_available


def gallery(n_instances: int = 30, per: int = 3, dim: int = 16, seed: int = 0) -> Gallery:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_instances * per, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.repeat([f"i{i:03d}" for i in range(n_instances)], per)
    return Gallery(x, ids)


def brute(g: Gallery, q: np.ndarray, k: int):
    vectors, ids = g.instance_average()
    scores = vectors @ q
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], i))[:k]
    return [str(ids[i]) for i in order], scores[order]


@pytest.mark.parametrize("engine", ["exact", "faiss-flat", "faiss-hnsw"])
def test_search_matches_brute_force(engine):
    if engine != "exact" and not faiss_available():
        pytest.skip("faiss is not installed")
    g = gallery()
    search = GallerySearch(g, engine)
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.normal(size=16).astype(np.float32)
        q /= np.linalg.norm(q)
        hits = search.search(q, 5)
        ids, scores = brute(g, q, 5)
        assert list(hits.instance_ids) == ids
        np.testing.assert_allclose(hits.scores, scores, atol=1e-5)
    assert search.engine == engine


def test_ties_keep_gallery_order_and_k_is_capped():
    x = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    search = GallerySearch(Gallery(x, np.array(["b", "a", "c"])), "exact")
    hits = search.search(np.array([1, 0], np.float32), 10)
    assert len(hits.instance_ids) == 3
    assert hits.instance_ids[:2] == tuple(search.ids[:2])


def test_auto_is_exact_for_a_museum():
    assert GallerySearch(gallery(), "auto").engine == "exact"


def test_best_reference_and_references():
    g = gallery(n_instances=3, per=2)
    search = GallerySearch(g)
    q = g.descriptors[3]
    row, score = search.best_reference(q, "i001")
    assert row == 3 and score == pytest.approx(1.0, abs=1e-5)
    assert list(search.references("i002")) == [4, 5]
    with pytest.raises(KeyError):
        search.best_reference(q, "nope")


def test_bad_queries():
    search = GallerySearch(gallery())
    with pytest.raises(ValueError, match="descriptor"):
        search.search(np.zeros(3, np.float32), 1)
    with pytest.raises(ValueError, match="k must"):
        search.search(np.zeros(16, np.float32), 0)
    with pytest.raises(ValueError, match="unknown search engine"):
        GallerySearch(gallery(), "annoy")

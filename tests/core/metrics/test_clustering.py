"""Pairwise F1 and NMI against pair enumeration and the entropy formula; seeded k-means."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from muselens.core.metrics.clustering import (
    evaluate_clustering,
    kmeans_assign,
    nmi,
    pair_counts,
    pairwise_f1,
)


def _f1_oracle(clusters: list[int], classes: list[int]) -> float:
    pairs = list(itertools.combinations(range(len(clusters)), 2))
    same_cluster = {p for p in pairs if clusters[p[0]] == clusters[p[1]]}
    same_class = {p for p in pairs if classes[p[0]] == classes[p[1]]}
    tp = len(same_cluster & same_class)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(same_cluster), tp / len(same_class)
    return 2 * precision * recall / (precision + recall)


def _nmi_oracle(clusters: list[int], classes: list[int]) -> float:
    n = len(clusters)

    def entropy(labels: list[int]) -> float:
        return -sum(c / n * math.log(c / n) for c in (labels.count(v) for v in set(labels)))

    mi = 0.0
    for a in set(clusters):
        for b in set(classes):
            joint = sum(1 for x, y in zip(clusters, classes) if x == a and y == b) / n
            if joint:
                mi += joint * math.log(joint / (clusters.count(a) / n) / (classes.count(b) / n))
    return 2 * mi / (entropy(clusters) + entropy(classes))


def _blobs(n_classes: int, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:n_classes] * 10.0 + 1.0
    labels = np.repeat(np.arange(n_classes), per_class)
    return centres[labels] + rng.normal(scale=0.05, size=(labels.size, 8)), labels


def test_pair_counts_and_f1_hand_example():
    clusters, classes = np.array([0, 0, 1, 1]), np.array(["a", "a", "a", "b"])
    assert pair_counts(clusters, classes) == (1, 2, 3)
    # precision 1/2, recall 1/3
    assert pairwise_f1(clusters, classes) == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))


def test_f1_and_nmi_match_oracles_on_random_labelings():
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(4, 25))  # 4+ samples in 3 classes: some pair shares a class
        clusters = rng.integers(0, rng.integers(1, 6), n)
        classes = rng.integers(0, 3, n)
        assert pairwise_f1(clusters, classes) == pytest.approx(_f1_oracle(clusters.tolist(), classes.tolist()))
        if len(set(clusters.tolist())) > 1 or len(set(classes.tolist())) > 1:  # else 0/0 in the formula
            assert nmi(clusters, classes) == pytest.approx(_nmi_oracle(clusters.tolist(), classes.tolist()))


def test_perfect_clustering_under_renaming_scores_one():
    classes = np.array([0, 0, 1, 1, 2, 2])
    clusters = np.array([7, 7, 3, 3, 5, 5])
    assert pairwise_f1(clusters, classes) == 1.0
    assert nmi(clusters, classes) == pytest.approx(1.0)


def test_f1_edge_cases():
    assert pairwise_f1(np.arange(4), np.array([0, 0, 1, 1])) == 0.0  # singleton clusters: no pair
    with pytest.raises(ValueError, match="two samples of one class"):
        pairwise_f1(np.array([0, 0, 0]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="at least one sample"):
        pair_counts(np.array([], dtype=int), np.array([], dtype=int))
    with pytest.raises(ValueError, match="class_labels has 2 entries, expected 3"):
        pairwise_f1(np.array([0, 0, 1]), np.array([0, 1]))


def test_kmeans_recovers_blobs_deterministically():
    x, y = _blobs(4, 5)
    a = kmeans_assign(x, 4, seed=3)
    assert pairwise_f1(a, y) == 1.0
    np.testing.assert_array_equal(a, kmeans_assign(x, 4, seed=3))
    with pytest.raises(ValueError, match="cannot make 21 clusters from 20 samples"):
        kmeans_assign(x, 21)


def test_evaluate_clustering_one_and_three_clusters_per_class():
    x, y = _blobs(4, 6)
    scores = evaluate_clustering(x, y, clusters_per_class=(1, 3), seed=0)
    assert scores[1].n_clusters == 4 and scores[1].nmi == pytest.approx(1.0) and scores[1].f1 == 1.0
    three = scores[3]
    assert three.n_clusters == 12 and three.clusters_per_class == 3
    assigned = kmeans_assign(x, 12, seed=0)
    both, same_cluster, _ = pair_counts(assigned, y)
    assert both == same_cluster  # over-segmenting tight blobs keeps clusters pure ...
    assert 0.0 < three.f1 < 1.0  # ... but splits classes, so pairwise recall drops
    assert three.f1 == pytest.approx(pairwise_f1(assigned, y))
    assert three.nmi == pytest.approx(nmi(assigned, y))


def test_evaluate_clustering_rejects_bad_input():
    x, y = _blobs(2, 2)
    with pytest.raises(ValueError, match="cannot make 6 clusters from 4 samples"):
        evaluate_clustering(x, y, clusters_per_class=(3,))
    with pytest.raises(ValueError, match="clusters_per_class must be >= 1"):
        evaluate_clustering(x, y, clusters_per_class=(0,))
    with pytest.raises(TypeError, match="integers or strings"):
        evaluate_clustering(x, y.astype(float))


def test_clustering_obstacle_names_what_a_small_museum_cannot_do():
    from muselens.core.metrics.clustering import clustering_obstacle

    one_reference = np.array(["a", "a", "b", "c", "d"])  # 4 artworks, one with a query
    assert clustering_obstacle(one_reference, 1) is None
    assert clustering_obstacle(one_reference, 3) == "cannot make 12 clusters from 5 samples"
    assert clustering_obstacle(np.array(["a", "b", "c"]), 1) == "no two samples of one artwork: pairwise F1 is undefined"
    assert clustering_obstacle(np.array(["a", "a"]), 1) == "one artwork: clustering needs at least two"
    x, y = _blobs(3, 4)
    for m in (1, 2, 4):  # where it says None, evaluate_clustering runs; where not, it raises
        if clustering_obstacle(y, m) is None:
            evaluate_clustering(x, y, clusters_per_class=(m,))
        else:
            with pytest.raises(ValueError):
                evaluate_clustering(x, y, clusters_per_class=(m,))

"""Clustering quality of descriptors: NMI and pairwise F1 of k-means (paper 003, section 6).

k-means runs on L2-normalised descriptors (Euclidean distance there ranks like cosine
similarity, eq. 4.8 of paper 004) with ``n_classes * m`` clusters for m clusters per
instance; paper 003 uses m = 1 and m = 3 to allow for intra-class variation.

F1 is the pairwise F-measure of paper 003's references [15, 16]: over all unordered
pairs of samples, a true positive is a pair in the same cluster and the same class;
precision = TP / pairs in the same cluster, recall = TP / pairs in the same class.
NMI is 2 I(clusters, classes) / (H(clusters) + H(classes)), sklearn's arithmetic NMI.

scikit-learn is imported inside the functions that need it, so the runtime can import
this module without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from muselens.core import checks
from muselens.core.metrics.ranking import l2_normalize


def _pairs(counts: np.ndarray) -> int:
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def pair_counts(cluster_labels: np.ndarray, class_labels: np.ndarray) -> tuple[int, int, int]:
    """``(same cluster and class, same cluster, same class)`` counts of unordered sample pairs."""
    clusters = checks.labels(cluster_labels, "cluster_labels")
    classes = checks.labels(class_labels, "class_labels", length=clusters.shape[0])
    if clusters.size == 0:
        raise ValueError("pair counts need at least one sample")
    _, ci = np.unique(clusters, return_inverse=True)
    _, ki = np.unique(classes, return_inverse=True)
    table = np.zeros((ci.max() + 1, ki.max() + 1), dtype=np.int64)
    np.add.at(table, (ci, ki), 1)
    return _pairs(table), _pairs(table.sum(axis=1)), _pairs(table.sum(axis=0))


def pairwise_f1(cluster_labels: np.ndarray, class_labels: np.ndarray) -> float:
    """Pairwise F1 of a clustering against classes.

    Undefined when no two samples share a class (ValueError). When no pair shares a
    cluster, or no same-cluster pair shares a class, F1 is 0.
    """
    both, same_cluster, same_class = pair_counts(cluster_labels, class_labels)
    if same_class == 0:
        raise ValueError("pairwise F1 needs at least two samples of one class")
    if both == 0:
        return 0.0
    precision, recall = both / same_cluster, both / same_class
    return 2 * precision * recall / (precision + recall)


def nmi(cluster_labels: np.ndarray, class_labels: np.ndarray) -> float:
    """Normalised mutual information, arithmetic normalisation (paper 003's formula)."""
    from sklearn.metrics import normalized_mutual_info_score

    clusters = checks.labels(cluster_labels, "cluster_labels")
    classes = checks.labels(class_labels, "class_labels", length=clusters.shape[0])
    return float(normalized_mutual_info_score(classes, clusters, average_method="arithmetic"))


def kmeans_assign(descriptors: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Cluster index per sample from seeded k-means (10 restarts) on L2-normalised descriptors."""
    from sklearn.cluster import KMeans

    x = l2_normalize(checks.float_array(descriptors, "descriptors", 2))
    n_clusters = checks.positive_int(n_clusters, "n_clusters")
    if n_clusters > x.shape[0]:
        raise ValueError(f"cannot make {n_clusters} clusters from {x.shape[0]} samples")
    model = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed)
    return model.fit_predict(x.astype(np.float64)).astype(np.int64)


def clustering_obstacle(labels: np.ndarray, clusters_per_class: int) -> str | None:
    """Why k-means with ``clusters_per_class`` clusters per instance cannot be scored, or None.

    A small museum (one reference per artwork) has fewer samples than 3 clusters per artwork;
    callers report the reason instead of failing the whole evaluation.
    """
    y = checks.labels(labels, "labels")
    m = checks.positive_int(clusters_per_class, "clusters_per_class")
    _, counts = np.unique(y, return_counts=True)
    if counts.size < 2:
        return "one artwork: clustering needs at least two"
    if counts.size * m > y.shape[0]:
        return f"cannot make {counts.size * m} clusters from {y.shape[0]} samples"
    if counts.max() < 2:
        return "no two samples of one artwork: pairwise F1 is undefined"
    return None


@dataclass(frozen=True)
class ClusteringScores:
    """Scores of one k-means run with ``clusters_per_class`` clusters per instance."""

    clusters_per_class: int
    n_clusters: int
    nmi: float
    f1: float


def evaluate_clustering(
    descriptors: np.ndarray,
    labels: np.ndarray,
    clusters_per_class: tuple[int, ...] = (1, 3),
    seed: int = 0,
) -> dict[int, ClusteringScores]:
    """NMI and pairwise F1 of k-means with ``n_classes * m`` clusters, for each m."""
    x = checks.float_array(descriptors, "descriptors", 2)
    y = checks.labels(labels, "labels", length=x.shape[0])
    n_classes = np.unique(y).shape[0]
    out: dict[int, ClusteringScores] = {}
    for m in clusters_per_class:
        m = checks.positive_int(m, "clusters_per_class")
        assigned = kmeans_assign(x, n_classes * m, seed=seed)
        out[m] = ClusteringScores(m, n_classes * m, nmi(assigned, y), pairwise_f1(assigned, y))
    return out

"""Torch-free evaluation metrics and retrieval post-processing (numpy; sklearn only lazily).

Shared by evaluation, the runtime and the benchmarks. Ranking ties are broken by gallery
index everywhere (see :mod:`ranking`); retrieval metrics can also rank ties pessimistically
(see :mod:`retrieval`).
"""

from __future__ import annotations

from muselens.core.metrics.augmentation import (
    average_query_expansion,
    database_side_augmentation,
    instance_average,
    rank_weights,
)
from muselens.core.metrics.clustering import (
    ClusteringScores,
    clustering_obstacle,
    evaluate_clustering,
    kmeans_assign,
    nmi,
    pair_counts,
    pairwise_f1,
)
from muselens.core.metrics.open_set import (
    OpenSetReport,
    OperatingPoint,
    calibrate_threshold,
    evaluate_open_set,
    open_set_curve,
    operating_point,
)
from muselens.core.metrics.ranking import l2_normalize, rank, similarity, top_k
from muselens.core.metrics.retrieval import (
    TIE_MODES,
    RetrievalReport,
    average_precision,
    evaluate_retrieval,
    precision_at_k,
    queries_in_gallery,
    ranked_relevance,
    recall_at_k,
    relevance,
)

__all__ = [
    "TIE_MODES",
    "ClusteringScores",
    "OpenSetReport",
    "OperatingPoint",
    "RetrievalReport",
    "average_precision",
    "average_query_expansion",
    "calibrate_threshold",
    "clustering_obstacle",
    "database_side_augmentation",
    "evaluate_clustering",
    "evaluate_open_set",
    "evaluate_retrieval",
    "instance_average",
    "kmeans_assign",
    "l2_normalize",
    "nmi",
    "open_set_curve",
    "operating_point",
    "pair_counts",
    "pairwise_f1",
    "precision_at_k",
    "queries_in_gallery",
    "rank",
    "rank_weights",
    "ranked_relevance",
    "recall_at_k",
    "relevance",
    "similarity",
    "top_k",
]

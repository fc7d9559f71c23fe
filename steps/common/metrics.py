"""Ranking metrics for one query, in numpy.

Conventions, shared with the Spark version in `common.spark_metrics`:

* Ranking: documents are sorted by score, highest first. Ties keep the documents' input
  order (a stable sort), so the result does not depend on the sort algorithm.
* NDCG@k: gain 2^label - 1, discount 1 / log2(rank + 1) with rank starting at 1. The ideal
  DCG sorts all of the query's labels, highest first, and also stops at rank k. A query
  whose ideal DCG is 0 (no document with label > 0) scores 0, as RankLib's NDCGScorer
  does. LightGBM scores such a query 1 instead.
* MRR and MAP count a document as relevant when label >= relevance_threshold. A query
  without relevant documents scores 0 on both. Average precision divides by the number
  of relevant documents in the query, as RankLib's APScorer does.
"""

from __future__ import annotations

import numpy as np


def _check_query(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores must be 1-D arrays of the same length, got shapes "
            f"{labels.shape} and {scores.shape}"
        )
    if labels.size == 0:
        raise ValueError("a query with no documents has no ranking metrics")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinity")
    return labels, scores


def rank_order(scores) -> np.ndarray:
    """Return document indices sorted by score, highest first, ties in input order."""
    scores = np.asarray(scores, dtype=np.float64)
    # A stable ascending sort of the negated scores keeps tied documents in input order.
    return np.argsort(-scores, kind="stable")


def _dcg(sorted_labels: np.ndarray, k: int) -> float:
    top = sorted_labels[:k]
    gains = np.power(2.0, top) - 1.0
    discounts = np.log2(np.arange(2, top.size + 2, dtype=np.float64))
    return float(np.sum(gains / discounts))


def ndcg_at_k(labels, scores, k: int) -> float:
    """Return NDCG@k of one query. See the module docstring for the conventions."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    labels, scores = _check_query(labels, scores)
    ideal = _dcg(np.sort(labels)[::-1], k)
    if ideal <= 0.0:
        return 0.0
    return _dcg(labels[rank_order(scores)], k) / ideal


def reciprocal_rank(labels, scores, relevance_threshold: float = 1) -> float:
    """Return 1 / rank of the first relevant document, or 0 when none is relevant."""
    labels, scores = _check_query(labels, scores)
    relevant = labels[rank_order(scores)] >= relevance_threshold
    if not relevant.any():
        return 0.0
    return 1.0 / (int(np.argmax(relevant)) + 1)


def average_precision(labels, scores, relevance_threshold: float = 1) -> float:
    """Return the mean of precision@rank over the ranks of the relevant documents.

    MAP is the mean of this value over queries. A query without relevant documents scores 0.
    """
    labels, scores = _check_query(labels, scores)
    relevant = labels[rank_order(scores)] >= relevance_threshold
    count = int(relevant.sum())
    if count == 0:
        return 0.0
    ranks = np.arange(1, relevant.size + 1, dtype=np.float64)
    precision = np.cumsum(relevant) / ranks
    return float(np.sum(precision[relevant]) / count)


# Metric names as they appear in evaluation.json and per_query.csv.
METRIC_NAMES = ("ndcg_at_1", "ndcg_at_5", "ndcg_at_10", "mrr", "map")


def query_metrics(labels, scores, relevance_threshold: float = 1) -> dict[str, float]:
    """Return every metric in METRIC_NAMES for one query."""
    return {
        "ndcg_at_1": ndcg_at_k(labels, scores, 1),
        "ndcg_at_5": ndcg_at_k(labels, scores, 5),
        "ndcg_at_10": ndcg_at_k(labels, scores, 10),
        "mrr": reciprocal_rank(labels, scores, relevance_threshold),
        "map": average_precision(labels, scores, relevance_threshold),
    }

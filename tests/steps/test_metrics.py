"""NDCG, MRR and MAP of one query, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from common import metrics

# Scores rank the documents 1, 3, 2, 0: documents 1 and 3 tie at 0.5 and keep input order.
LABELS = [0, 1, 2, 0]
SCORES = [0.1, 0.5, 0.2, 0.5]
# Labels in ranked order: 1, 0, 2, 0. Gains 2^label - 1: 1, 0, 3, 0.
DCG = 1 / math.log2(2) + 3 / math.log2(4)
# Ideal order 2, 1, 0, 0: gains 3, 1.
IDEAL_DCG = 3 / math.log2(2) + 1 / math.log2(3)


def test_ndcg_hand_checked():
    assert metrics.ndcg_at_k(LABELS, SCORES, 10) == pytest.approx(DCG / IDEAL_DCG)
    assert metrics.ndcg_at_k(LABELS, SCORES, 4) == pytest.approx(DCG / IDEAL_DCG)


def test_ndcg_cutoff_truncates_both_dcgs():
    # At k=1 the ranked list has gain 1, the ideal list gain 3.
    assert metrics.ndcg_at_k(LABELS, SCORES, 1) == pytest.approx(1 / 3)
    # At k=2 the ranked list has gains 1, 0 and the ideal list 3, 1.
    assert metrics.ndcg_at_k(LABELS, SCORES, 2) == pytest.approx(1 / IDEAL_DCG)


def test_ties_keep_input_order():
    assert list(metrics.rank_order([0.5, 0.5, 0.9, 0.5])) == [2, 0, 1, 3]
    # All scores equal: the ranking is the input order, labels 0, 3.
    assert metrics.ndcg_at_k([0, 3], [1.0, 1.0], 1) == 0.0
    assert metrics.ndcg_at_k([3, 0], [1.0, 1.0], 1) == 1.0


def test_perfect_ranking_scores_one():
    assert metrics.ndcg_at_k([0, 1, 4], [0.0, 1.0, 2.0], 10) == pytest.approx(1.0)
    assert metrics.average_precision([0, 1, 4], [0.0, 1.0, 2.0]) == pytest.approx(1.0)


def test_mrr_hand_checked():
    # Ranked labels 1, 0, 2, 0 with threshold 1: first relevant at rank 1.
    assert metrics.reciprocal_rank(LABELS, SCORES, 1) == 1.0
    # With threshold 2 the first relevant document (label 2) is at rank 3.
    assert metrics.reciprocal_rank(LABELS, SCORES, 2) == pytest.approx(1 / 3)


def test_map_hand_checked():
    # Threshold 1: relevant at ranks 1 and 3, precision 1/1 and 2/3.
    assert metrics.average_precision(LABELS, SCORES, 1) == pytest.approx((1 + 2 / 3) / 2)
    # Threshold 2: one relevant document at rank 3, precision 1/3.
    assert metrics.average_precision(LABELS, SCORES, 2) == pytest.approx(1 / 3)


def test_query_without_relevant_documents_scores_zero():
    labels, scores = [0, 0, 0], [0.3, 0.2, 0.1]
    assert metrics.ndcg_at_k(labels, scores, 10) == 0.0
    assert metrics.reciprocal_rank(labels, scores) == 0.0
    assert metrics.average_precision(labels, scores) == 0.0


def test_query_metrics_names_every_metric():
    values = metrics.query_metrics(LABELS, SCORES, 1)
    assert tuple(values) == metrics.METRIC_NAMES
    assert values["ndcg_at_5"] == pytest.approx(DCG / IDEAL_DCG)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([], [], "no documents"),
        ([1, 0], [0.1], "the same length"),
        ([1, 0], [0.1, float("nan")], "NaN"),
    ],
)
def test_invalid_query_raises(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        metrics.ndcg_at_k(labels, scores, 10)


def test_cutoff_below_one_raises():
    with pytest.raises(ValueError, match="k must be at least 1"):
        metrics.ndcg_at_k([1], [0.5], 0)

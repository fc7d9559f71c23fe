"""Losses, padded batches and the scorer model, on cases worked out by hand."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from common import ranking
from tests.steps.steprunner import STEPS

# One query of three documents, labels 2, 1, 0, scored 1, 0, 0.
LABELS = np.array([[2.0, 1.0, 0.0]], dtype=np.float32)
SCORES = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
MASK = np.array([[True, True, True]])


def test_softmax_loss_hand_checked():
    # Targets 2/3, 1/3, 0. log softmax = score - log(e + 2).
    log_normalizer = math.log(math.e + 2)
    expected = -(2 / 3 * (1 - log_normalizer) + 1 / 3 * (0 - log_normalizer))
    loss = ranking.softmax_cross_entropy_loss(LABELS, SCORES, MASK)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_pairwise_loss_hand_checked():
    # Pairs (0, 1) and (0, 2) have score difference 1, pair (1, 2) difference 0.
    expected = (2 * math.log(1 + math.exp(-1)) + math.log(2)) / 3
    loss = ranking.pairwise_logistic_loss(LABELS, SCORES, MASK)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loss_name", ranking.LOSSES)
def test_losses_ignore_padded_documents(loss_name):
    loss_function = ranking.loss_function(loss_name)
    # Padding with a high label and an extreme score would change the loss if counted.
    labels = np.array([[2.0, 1.0, 0.0, 4.0, 3.0]], dtype=np.float32)
    scores = np.array([[1.0, 0.0, 0.0, 50.0, -50.0]], dtype=np.float32)
    mask = np.array([[True, True, True, False, False]])
    padded = float(loss_function(labels, scores, mask))
    assert padded == pytest.approx(float(loss_function(LABELS, SCORES, MASK)), rel=1e-6)


def test_padding_gradient_is_zero():
    import tensorflow as tf

    labels = tf.constant([[2.0, 1.0, 0.0, 4.0]])
    mask = tf.constant([[True, True, True, False]])
    for loss_name in ranking.LOSSES:
        scores = tf.Variable([[1.0, 0.0, 0.0, 3.0]])
        with tf.GradientTape() as tape:
            loss = ranking.loss_function(loss_name)(labels, scores, mask)
        gradient = tape.gradient(loss, scores).numpy()
        assert gradient[0, 3] == 0.0, loss_name
        assert np.all(np.isfinite(gradient)), loss_name


def test_softmax_loss_skips_queries_without_positive_labels():
    # The second query has only label 0 and must not change the average.
    labels = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    scores = np.array([[1.0, 0.0, 0.0], [5.0, 0.0, 0.0]], dtype=np.float32)
    mask = np.ones((2, 3), dtype=bool)
    both = float(ranking.softmax_cross_entropy_loss(labels, scores, mask))
    assert both == pytest.approx(float(ranking.softmax_cross_entropy_loss(LABELS, SCORES, MASK)))


@pytest.mark.parametrize("loss_name", ranking.LOSSES)
def test_losses_are_zero_without_positive_labels(loss_name):
    labels = np.zeros((1, 3), dtype=np.float32)
    assert float(ranking.loss_function(loss_name)(labels, SCORES, MASK)) == 0.0


def test_train_step_accepts_every_loss():
    spec = importlib.util.spec_from_file_location("train_step", STEPS / "train" / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    assert train.LOSSES == ranking.LOSSES


def test_unknown_loss_raises():
    with pytest.raises(
        ValueError, match="unknown loss 'hinge', expected one of: softmax, pairwise_logistic"
    ):
        ranking.loss_function("hinge")


def test_group_queries_sorts_by_qid_and_doc():
    queries = ranking.group_queries(
        qids=[7, 3, 7, 3, 7],
        docs=[2, 1, 0, 0, 1],
        labels=[0, 1, 2, 3, 4],
        features=np.arange(10, dtype=np.float32).reshape(5, 2),
    )
    assert [query.qid for query in queries] == [3, 7]
    assert list(queries[0].docs) == [0, 1]
    assert list(queries[0].labels) == [3, 1]
    assert list(queries[1].docs) == [0, 1, 2]
    assert list(queries[1].labels) == [2, 4, 0]
    assert queries[1].features[0].tolist() == [4.0, 5.0]


def test_pad_queries_masks_padding():
    queries = ranking.group_queries([1, 1, 2], [0, 1, 0], [1, 0, 2], np.ones((3, 4)))
    features, labels, mask = ranking.pad_queries(queries)
    assert features.shape == (2, 2, 4)
    assert labels.tolist() == [[1, 0], [2, 0]]
    assert mask.tolist() == [[True, True], [True, False]]
    assert features[1, 1].tolist() == [0, 0, 0, 0]


def test_pad_queries_rejects_query_without_documents():
    empty = ranking.Query(
        5, np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, 3), np.float32)
    )
    with pytest.raises(ValueError, match="query 5 has no documents"):
        ranking.pad_queries([empty])
    with pytest.raises(ValueError, match="zero queries"):
        ranking.pad_queries([])


def test_padded_batches_cover_every_query_once():
    queries = ranking.group_queries(np.arange(5), np.zeros(5), np.zeros(5), np.ones((5, 2)))
    batches = list(ranking.padded_batches(queries, 2, np.random.default_rng(0)))
    assert [len(batch[0]) for batch in batches] == [2, 2, 1]


def test_model_scores_do_not_depend_on_padding():
    model = ranking.build_model(num_features=3, hidden_units=[4], dropout=0.5, seed=1)
    documents = np.random.default_rng(0).normal(size=(1, 2, 3)).astype(np.float32)
    padded = np.concatenate([documents, np.full((1, 3, 3), 9.0, np.float32)], axis=1)
    alone = np.asarray(model(documents, training=False))
    with_padding = np.asarray(model(padded, training=False))
    assert alone.shape == (1, 2)
    assert with_padding.shape == (1, 5)
    np.testing.assert_allclose(with_padding[:, :2], alone, rtol=1e-6)

"""The train step's flat batch layout gives the losses of the padded layout."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from common import ranking


def make_queries(seed: int, count: int = 7) -> list[ranking.Query]:
    rng = np.random.default_rng(seed)
    queries = []
    for qid in range(count):
        size = int(rng.integers(1, 30))
        queries.append(
            ranking.Query(
                qid,
                np.arange(size),
                rng.integers(0, 5, size).astype(np.float32),
                rng.normal(size=(size, 6)).astype(np.float32),
            )
        )
    return queries


def flat_and_padded(queries, batch_size: int, seed: int):  # type: ignore[no-untyped-def]
    flat = list(
        ranking.flat_batches(ranking.FlatQueries(queries), batch_size, np.random.default_rng(seed))
    )
    padded = list(ranking.padded_batches(queries, batch_size, np.random.default_rng(seed)))
    return flat, padded


def test_flat_batches_follow_padded_order() -> None:
    flat, padded = flat_and_padded(make_queries(1), 3, seed=5)
    assert len(flat) == len(padded) == 3
    for flat_batch, (features, labels, mask) in zip(flat, padded, strict=True):
        assert np.array_equal(flat_batch.labels, labels)
        assert np.array_equal(flat_batch.mask, mask)
        # The flat features are the padded ones without the padding.
        assert np.array_equal(flat_batch.features[0], features[mask])
        assert flat_batch.queries == len(labels)


def test_positions_place_documents() -> None:
    flat, padded = flat_and_padded(make_queries(2), 4, seed=1)
    for flat_batch, (features, _, mask) in zip(flat, padded, strict=True):
        rows, columns = flat_batch.positions[:, 0], flat_batch.positions[:, 1]
        assert np.array_equal(features[rows, columns], flat_batch.features[0])
        assert mask[rows, columns].all()
        assert len(flat_batch.positions) == mask.sum()


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_pairwise_loss_on_pairs_matches_padded(seed: int) -> None:
    flat, padded = flat_and_padded(make_queries(seed), 3, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for flat_batch, (_, labels, mask) in zip(flat, padded, strict=True):
        scores = rng.normal(size=mask.shape).astype(np.float32)
        expected = float(ranking.pairwise_logistic_loss(labels, scores, mask))
        flat_scores = scores[mask]
        actual = float(ranking.pairwise_logistic_loss_on_pairs(flat_scores, flat_batch.pairs))
        assert actual == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("seed", [0, 5])
def test_pair_loss_gradient_matches_padded(seed: int) -> None:
    """The hand-written gradient equals automatic differentiation of the padded loss."""
    flat, padded = flat_and_padded(make_queries(seed), 4, seed=seed)
    rng = np.random.default_rng(seed + 7)
    for flat_batch, (_, labels, mask) in zip(flat, padded, strict=True):
        scores = tf.constant(rng.normal(size=mask.shape).astype(np.float32))
        with tf.GradientTape() as tape:
            tape.watch(scores)
            expected = ranking.pairwise_logistic_loss(labels, scores, mask)
        expected_gradient = tape.gradient(expected, scores).numpy()[mask]
        flat_scores = tf.constant(scores.numpy()[mask])
        with tf.GradientTape() as tape:
            tape.watch(flat_scores)
            actual = ranking.pairwise_logistic_loss_on_pairs(flat_scores, flat_batch.pairs)
        actual_gradient = tape.gradient(actual, flat_scores).numpy()
        assert np.abs(expected_gradient).max() > 0
        np.testing.assert_allclose(actual_gradient, expected_gradient, rtol=1e-4, atol=1e-7)


def test_softmax_loss_from_scattered_scores() -> None:
    flat, padded = flat_and_padded(make_queries(4), 3, seed=2)
    rng = np.random.default_rng(9)
    for flat_batch, (_, labels, mask) in zip(flat, padded, strict=True):
        scores = rng.normal(size=mask.shape).astype(np.float32)
        expected = float(ranking.softmax_cross_entropy_loss(labels, scores, mask))
        scattered = tf.scatter_nd(flat_batch.positions, scores[mask], tf.shape(flat_batch.labels))
        actual = float(ranking.softmax_cross_entropy_loss(flat_batch.labels, scattered, mask))
        assert actual == pytest.approx(expected, rel=1e-5)


def test_pairs_loss_zero_without_pairs() -> None:
    equal = ranking.Query(1, np.arange(3), np.ones(3, np.float32), np.zeros((3, 6), np.float32))
    (batch,) = ranking.flat_batches(ranking.FlatQueries([equal]), 4)
    assert batch.pairs.shape == (0, 2)
    assert (
        float(ranking.pairwise_logistic_loss_on_pairs(np.zeros(3, np.float32), batch.pairs)) == 0.0
    )


def test_flat_queries_reject_empty_query() -> None:
    empty = ranking.Query(1, np.arange(0), np.zeros(0, np.float32), np.zeros((0, 6), np.float32))
    with pytest.raises(ValueError, match="query 1 has no documents"):
        ranking.FlatQueries([empty])


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_batch_groups_concatenate_batches(steps: int) -> None:
    queries = make_queries(5, count=11)
    flat = ranking.FlatQueries(queries)
    batches = list(ranking.flat_batches(flat, 2, np.random.default_rng(3)))
    groups = list(ranking.batch_groups(flat, 2, steps, np.random.default_rng(3)))

    assert [group.steps for group in groups] == [
        min(steps, len(batches) - first) for first in range(0, len(batches), steps)
    ]
    grouped = iter(batches)
    for group in groups:
        for index in range(group.steps):
            batch = next(grouped)
            documents = slice(group.document_splits[index], group.document_splits[index + 1])
            pairs = slice(group.pair_splits[index], group.pair_splits[index + 1])
            np.testing.assert_array_equal(group.features[documents], batch.features[0])
            np.testing.assert_array_equal(group.positions[documents], batch.positions)
            np.testing.assert_array_equal(
                group.labels[documents], batch.labels[tuple(batch.positions.T)]
            )
            np.testing.assert_array_equal(group.pairs[pairs], batch.pairs)
            assert group.queries[index] == batch.queries


def test_batch_groups_reject_zero_steps() -> None:
    with pytest.raises(ValueError, match="steps must be at least 1"):
        list(ranking.batch_groups(ranking.FlatQueries(make_queries(1)), 2, 0))

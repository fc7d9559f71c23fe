"""Dropout masks drawn with the batches, and the training scores that apply them."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from common import ranking


def test_masks_keep_rate_and_scale() -> None:
    rng = np.random.default_rng(0)
    [first, second] = ranking.dropout_masks(rng, np.array([0, 3000, 5000]), [40, 8], 0.25)
    assert first.shape == (5000, 40)
    assert second.shape == (5000, 8)
    assert first.dtype == np.float32
    assert set(np.unique(first)) == {0.0, np.float32(1 / 0.75)}
    # 200,000 draws: the dropped share is within 0.005 of the rate (about 5 standard errors).
    assert abs((first == 0).mean() - 0.25) < 0.005


def test_masks_same_for_any_grouping() -> None:
    splits = np.array([0, 7, 12, 30])
    together = ranking.dropout_masks(np.random.default_rng(5), splits, [6, 3], 0.5)
    rng = np.random.default_rng(5)
    apart = [
        ranking.dropout_masks(rng, np.array([0, end - start]), [6, 3], 0.5)
        for start, end in zip(splits[:-1], splits[1:], strict=True)
    ]
    for layer in range(2):
        np.testing.assert_array_equal(
            together[layer], np.concatenate([masks[layer] for masks in apart])
        )


def test_no_masks_without_dropout() -> None:
    assert ranking.dropout_masks(np.random.default_rng(0), np.array([0, 4]), [6, 3], 0.0) == []


def test_all_kept_masks_give_inference_scores() -> None:
    model = ranking.build_model(5, [6, 3], 0.2, seed=1)
    features = np.random.default_rng(2).normal(size=(9, 5)).astype(np.float32)
    masks = [np.ones((9, 6), np.float32), np.ones((9, 3), np.float32)]
    scores = ranking.training_scores(model, tf.constant(features), masks)
    expected = model(features[None], training=False)[0]
    np.testing.assert_allclose(scores.numpy(), expected.numpy(), rtol=1e-6)


def test_masks_apply_after_each_hidden_layer() -> None:
    model = ranking.build_model(5, [6, 3], 0.2, seed=1)
    features = np.random.default_rng(2).normal(size=(9, 5)).astype(np.float32)
    masks = ranking.dropout_masks(np.random.default_rng(3), np.array([0, 9]), [6, 3], 0.2)
    weights = model.get_weights()
    hidden = np.maximum(features @ weights[0] + weights[1], 0) * masks[0]
    hidden = np.maximum(hidden @ weights[2] + weights[3], 0) * masks[1]
    expected = (hidden @ weights[4] + weights[5])[:, 0]
    scores = ranking.training_scores(model, tf.constant(features), masks)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_training_scores_reject_missing_masks() -> None:
    model = ranking.build_model(5, [6, 3], 0.2, seed=1)
    with pytest.raises(ValueError, match="1 dropout masks for a model with 2 Dropout layers"):
        ranking.training_scores(model, tf.zeros([2, 5]), [np.ones((2, 6), np.float32)])

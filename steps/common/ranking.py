"""The ranking model, its losses and the padded batches it trains on.

A batch contains whole queries: features [queries, list size, features], labels
[queries, list size] and a boolean mask [queries, list size] that is False on padding.
The model scores each document on its own with an MLP, so padding never changes the
score of a real document, and the losses ignore padded positions through the mask.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

LOSSES = ("softmax", "pairwise_logistic")


@dataclass
class Query:
    """One query's documents, sorted by `docs` (the position in the raw file)."""

    qid: int
    docs: np.ndarray  # int64 [n]
    labels: np.ndarray  # float32 [n]
    features: np.ndarray  # float32 [n, num_features]


def group_queries(qids, docs, labels, features) -> list[Query]:
    """Group row arrays by qid and return the queries sorted by qid, documents by doc."""
    qids = np.asarray(qids, dtype=np.int64)
    docs = np.asarray(docs, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.float32)
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or not (len(qids) == len(docs) == len(labels) == len(features)):
        raise ValueError("qids, docs, labels and features must have one row per document")
    # lexsort sorts by the last key first: qid, then doc within a query.
    order = np.lexsort((docs, qids))
    qids, docs, labels, features = qids[order], docs[order], labels[order], features[order]
    starts = np.flatnonzero(np.r_[True, qids[1:] != qids[:-1]]) if len(qids) else np.array([], int)
    ends = np.r_[starts[1:], len(qids)]
    return [
        Query(int(qids[start]), docs[start:end], labels[start:end], features[start:end])
        for start, end in zip(starts, ends, strict=True)
    ]


def pad_queries(queries: list[Query]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (features, labels, mask) for the queries, padded to the longest list.

    Raises ValueError for an empty list of queries and for a query with no documents.
    """
    if not queries:
        raise ValueError("cannot build a batch from zero queries")
    for query in queries:
        if len(query.labels) == 0:
            raise ValueError(f"query {query.qid} has no documents")
    list_size = max(len(query.labels) for query in queries)
    num_features = queries[0].features.shape[1]
    features = np.zeros((len(queries), list_size, num_features), dtype=np.float32)
    labels = np.zeros((len(queries), list_size), dtype=np.float32)
    mask = np.zeros((len(queries), list_size), dtype=bool)
    for row, query in enumerate(queries):
        size = len(query.labels)
        features[row, :size] = query.features
        labels[row, :size] = query.labels
        mask[row, :size] = True
    return features, labels, mask


def padded_batches(
    queries: list[Query], batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield padded batches of `batch_size` queries (the last one may be smaller).

    With `rng`, the query order is shuffled first. Each batch is padded only to its own
    longest query.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = np.arange(len(queries))
    if rng is not None:
        rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        yield pad_queries([queries[index] for index in order[start : start + batch_size]])


@dataclass
class FlatBatch:
    """A batch of whole queries in the flat layout the train step uses.

    `features` [1, documents, features] contains the documents of all the batch's queries one
    after the other, with no padding, so the MLP scores only real documents. `pairs`
    [pairs, 2] indexes the documents (i, j) of each pair with label_i > label_j within a
    query. `positions` [documents, 2] is each document's (query row, position) in the padded
    [queries, list size] layout of `labels` and `mask`, which the listwise loss needs.
    """

    features: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    positions: np.ndarray
    pairs: np.ndarray

    @property
    def queries(self) -> int:
        return len(self.labels)


class FlatQueries:
    """Queries with their ordered pairs computed once, for `flat_batches`."""

    def __init__(self, queries: list[Query]) -> None:
        for query in queries:
            if len(query.labels) == 0:
                raise ValueError(f"query {query.qid} has no documents")
        self.queries = queries
        self.pairs = [
            np.argwhere(query.labels[:, None] > query.labels[None, :]).astype(np.int32)
            for query in queries
        ]

    def __len__(self) -> int:
        return len(self.queries)


def flat_batches(
    flat: FlatQueries, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[FlatBatch]:
    """Yield batches of `batch_size` queries (the last one may be smaller) in the flat layout.

    With `rng`, the query order is shuffled first, exactly as `padded_batches` shuffles it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = np.arange(len(flat))
    if rng is not None:
        rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        queries = [flat.queries[index] for index in indices]
        sizes = np.array([len(query.labels) for query in queries])
        offsets = np.r_[0, np.cumsum(sizes)[:-1]]
        list_size = int(sizes.max())
        labels = np.zeros((len(queries), list_size), dtype=np.float32)
        mask = np.arange(list_size)[None, :] < sizes[:, None]
        for row, query in enumerate(queries):
            labels[row, : sizes[row]] = query.labels
        positions = _positions(sizes, offsets)
        pairs = np.concatenate(
            [flat.pairs[index] + offset for index, offset in zip(indices, offsets, strict=True)]
        ).astype(np.int32)
        features = np.concatenate([query.features for query in queries])[None]
        yield FlatBatch(features, labels, mask, positions, pairs)


@dataclass
class BatchGroup:
    """Consecutive flat batches that one call of the train step's tf.function trains on.

    Their arrays are concatenated. Batch k has the documents
    document_splits[k]:document_splits[k + 1] of `features` [documents, features], `labels`
    [documents] and `positions` [documents, 2]. Its pairs are pair_splits[k]:pair_splits[k + 1]
    of `pairs`, with indices that count from the batch's first document, as in its FlatBatch.
    `queries` contains the number of queries of each batch.
    """

    features: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    document_splits: np.ndarray
    pairs: np.ndarray
    pair_splits: np.ndarray
    queries: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.queries)


def batch_groups(
    flat: FlatQueries,
    batch_size: int,
    steps: int,
    rng: np.random.Generator | None = None,
) -> Iterator[BatchGroup]:
    """Yield the batches of `flat_batches` (same order, same shuffle) in groups of `steps`.

    The last group of an epoch may have fewer batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    order = np.arange(len(flat))
    if rng is not None:
        rng.shuffle(order)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    for first in range(0, len(batches), steps):
        group = batches[first : first + steps]
        features, labels, positions, pairs = [], [], [], []
        document_splits, pair_splits = [0], [0]
        for indices in group:
            queries = [flat.queries[index] for index in indices]
            sizes = np.array([len(query.labels) for query in queries], dtype=np.int32)
            # int32 offsets keep the pairs int32, so that they are not copied once more.
            offsets = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int32)
            features.extend(query.features for query in queries)
            labels.extend(query.labels for query in queries)
            positions.append(_positions(sizes, offsets))
            batch_pairs = [
                flat.pairs[index] + offset for index, offset in zip(indices, offsets, strict=True)
            ]
            pairs.extend(batch_pairs)
            document_splits.append(document_splits[-1] + int(sizes.sum()))
            pair_splits.append(pair_splits[-1] + sum(len(p) for p in batch_pairs))
        yield BatchGroup(
            features=np.concatenate(features),
            labels=np.concatenate(labels).astype(np.float32, copy=False),
            positions=np.concatenate(positions),
            document_splits=np.array(document_splits, dtype=np.int32),
            pairs=np.concatenate(pairs).astype(np.int32, copy=False).reshape(-1, 2),
            pair_splits=np.array(pair_splits, dtype=np.int32),
            queries=np.array([len(indices) for indices in group]),
        )


def _positions(sizes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Return each document's (query row, position in its query) for queries of `sizes`."""
    return np.stack(
        [
            np.repeat(np.arange(len(sizes)), sizes),
            np.arange(sizes.sum()) - np.repeat(offsets, sizes),
        ],
        axis=1,
    ).astype(np.int32)


def pairwise_logistic_loss_on_pairs(scores, pairs) -> tf.Tensor:
    """Return `pairwise_logistic_loss` from flat scores [documents] and the pairs (i, j)
    with label_i > label_j: log(1 + exp(-(s_i - s_j))) averaged over the pairs, 0 without any.

    It computes one softplus per pair rather than one per cell of [queries, list size, list
    size], and its gradient directly: each pair adds -sigmoid(s_j - s_i) / (number of pairs)
    to the gradient of s_i and subtracts it from that of s_j.
    """
    pairs = tf.convert_to_tensor(pairs, tf.int32)
    return _pair_loss(tf.cast(scores, tf.float32), pairs[:, 0], pairs[:, 1])


@tf.custom_gradient
def _pair_loss(scores, better, worse):
    # Automatic differentiation would slice a [pairs, 2] gradient and scatter it over both
    # ends. Two segment sums over the pairs give the same gradient with fewer operations.
    differences = tf.gather(scores, better) - tf.gather(scores, worse)
    count = tf.maximum(tf.cast(tf.shape(better)[0], tf.float32), 1.0)
    loss = tf.reduce_sum(tf.math.softplus(-differences)) / count

    def gradient(upstream):
        per_pair = -tf.math.sigmoid(-differences) * (upstream / count)
        documents = tf.shape(scores)[0]
        return (
            tf.math.unsorted_segment_sum(per_pair, better, documents)
            - tf.math.unsorted_segment_sum(per_pair, worse, documents),
            None,
            None,
        )

    return loss, gradient


def build_model(
    num_features: int, hidden_units: list[int], dropout: float, seed: int
) -> keras.Model:
    """Build the scorer: an MLP applied to each document of [batch, list, features].

    It returns scores [batch, list]. Scores at padded positions are meaningless, and the
    losses and metrics mask them out.
    """
    features = keras.Input(shape=(None, num_features), name="features")
    hidden = features
    for layer_index, units in enumerate(hidden_units, start=1):
        hidden = keras.layers.Dense(
            units,
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + layer_index),
            name=f"hidden_{layer_index}",
        )(hidden)
        if dropout > 0:
            hidden = keras.layers.Dropout(
                dropout, seed=seed + 1000 + layer_index, name=f"dropout_{layer_index}"
            )(hidden)
    score = keras.layers.Dense(
        1, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name="score"
    )(hidden)
    scores = keras.layers.Reshape((-1,), name="scores")(score)
    return keras.Model(features, scores, name="ranking_mlp")


def dropout_masks(
    rng: np.random.Generator, document_splits: np.ndarray, hidden_units: list[int], rate: float
) -> list[np.ndarray]:
    """Draw the dropout masks of a BatchGroup, for `training_scores`.

    Returns one float32 array [documents, units] per hidden layer, empty without dropout.
    Each value is 0 (dropped, with probability `rate`) or 1 / (1 - rate), as Keras's Dropout
    scales the kept values. The masks are drawn batch by batch, so a batch gets the same
    masks whatever the number of batches in its group.
    """
    if rate == 0:
        return []
    per_layer: list[list[np.ndarray]] = [[] for _ in hidden_units]
    for start, end in zip(document_splits[:-1], document_splits[1:], strict=True):
        for layer, units in enumerate(hidden_units):
            keep = rng.random((end - start, units), dtype=np.float32) >= rate
            per_layer[layer].append(keep.astype(np.float32) / np.float32(1 - rate))
    return [np.concatenate(masks) for masks in per_layer]


def training_scores(model: keras.Model, features: tf.Tensor, masks) -> tf.Tensor:
    """Return the training-time scores [documents] of `features` [documents, features].

    It applies the layers of `build_model`'s model as model(features[None], training=True)
    does, but each Dropout layer multiplies by the next of `masks` (from `dropout_masks`)
    in place of drawing random numbers in the graph, which took about a fifth of a train
    step on the CPU.
    """
    dropout_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    if len(masks) != len(dropout_layers):
        raise ValueError(
            f"{len(masks)} dropout masks for a model with {len(dropout_layers)} Dropout layers"
        )
    remaining = list(masks)
    hidden = features
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.Dropout):
            hidden = hidden * remaining.pop(0)
        elif isinstance(layer, keras.layers.Reshape):
            hidden = tf.reshape(hidden, [-1])
        else:
            hidden = layer(hidden)
    return hidden


def softmax_cross_entropy_loss(labels, scores, mask) -> tf.Tensor:
    """Return the listwise softmax cross-entropy, averaged over queries.

    Each query's target distribution is its labels divided by their sum, as in
    TF-Ranking's SoftmaxLoss (tensorflow_ranking/python/losses_impl.py), and the loss is
    the cross-entropy between it and the softmax of the scores over the query's real
    documents. Every query with a positive label weighs the same in the average, whereas
    TF-Ranking weights each query by its label sum. Queries whose labels are all 0 have
    no target and are left out. The loss is 0 when no query in the batch has a positive
    label.
    """
    mask = tf.cast(mask, tf.bool)
    labels = tf.where(mask, tf.cast(labels, tf.float32), 0.0)
    # A large negative score gives padded documents a softmax probability of exactly 0.
    scores = tf.where(mask, tf.cast(scores, tf.float32), -1e9)
    label_sums = tf.reduce_sum(labels, axis=1)
    has_target = label_sums > 0
    targets = labels / tf.maximum(label_sums, 1e-12)[:, None]
    log_probabilities = tf.nn.log_softmax(scores, axis=1)
    per_query = -tf.reduce_sum(tf.where(mask, targets * log_probabilities, 0.0), axis=1)
    per_query = tf.where(has_target, per_query, 0.0)
    count = tf.reduce_sum(tf.cast(has_target, tf.float32))
    return tf.reduce_sum(per_query) / tf.maximum(count, 1.0)


def pairwise_logistic_loss(labels, scores, mask) -> tf.Tensor:
    """Return log(1 + exp(-(s_i - s_j))) averaged over the pairs with label_i > label_j.

    Pairs are formed within a query between real documents only. The loss is 0 when the
    batch has no such pair.
    """
    mask = tf.cast(mask, tf.bool)
    labels = tf.cast(labels, tf.float32)
    scores = tf.cast(scores, tf.float32)
    pairs = (labels[:, :, None] > labels[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    score_differences = scores[:, :, None] - scores[:, None, :]
    pair_losses = tf.where(pairs, tf.math.softplus(-score_differences), 0.0)
    count = tf.reduce_sum(tf.cast(pairs, tf.float32))
    return tf.reduce_sum(pair_losses) / tf.maximum(count, 1.0)


def loss_function(name: str):
    """Return the loss called `name`: one of LOSSES. Raises ValueError for another name."""
    if name == "softmax":
        return softmax_cross_entropy_loss
    if name == "pairwise_logistic":
        return pairwise_logistic_loss
    raise ValueError(f"unknown loss {name!r}, expected one of: {', '.join(LOSSES)}")


def score_queries(model: keras.Model, queries: list[Query], batch_size: int) -> list[np.ndarray]:
    """Return the model's scores for each query's documents, in the queries' order."""
    scores: list[np.ndarray] = []
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        features, _, _ = pad_queries(batch)
        batch_scores = model(features, training=False)
        batch_scores = np.asarray(batch_scores, dtype=np.float64)
        for row, query in enumerate(batch):
            scores.append(batch_scores[row, : len(query.labels)])
    return scores

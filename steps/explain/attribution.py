"""SHAP values, their aggregation and partial dependence for the ranker's per-document score.

The ranking model (common/ranking.py) applies the same Dense stack to each document of a
query, so a document's score depends on its own feature vector only. Everything here
explains that function, `features [rows, features] -> scores [rows]`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("explain")

# Clarify's values of SHAPConfig.agg_method.
AGG_METHODS = ("mean_abs", "median", "mean_sq")

# Rows per model call. One call takes about this many rows x features x 4 bytes of input.
BATCH_ROWS = 65536

# Rows explained per KernelExplainer call, so that progress reaches the log.
ROWS_PER_PROGRESS_LINE = 50

# Maximum number of rows that k-means clustering reads. Larger splits are sampled with the seed.
KMEANS_MAX_ROWS = 10000

EXPLAINER_NAME = "shap.KernelExplainer"
EXPLAINER_REASON = (
    "Kernel SHAP is the algorithm that SageMaker Clarify runs, so num_samples, the baseline "
    "and expected_value mean what they mean in a Clarify job. Its constrained regression "
    "makes each row's SHAP values add up to score - expected_value exactly, and with "
    "num_samples >= 2^players - 2 it enumerates every coalition and returns exact Shapley "
    "values. DeepExplainer (DeepLIFT) only approximates Shapley values for a ReLU network, "
    "and GradientExplainer's values do not add up to the score."
)


class DocumentScorer:
    """The model's score of each row as one document: `scorer(features [n, F]) -> [n]`.

    The rows go into the model as a single list of n documents. That equals scoring each
    document in its own query because the model scores documents independently, which
    `max_score_difference` checks on real queries. `rows_scored` counts the rows scored.
    """

    def __init__(self, model):
        import tensorflow as tf

        self.num_features = int(model.input_shape[-1])
        self.rows_scored = 0
        # One fixed signature, so that batches of any length reuse a single trace.
        self._score = tf.function(
            lambda features: model(features, training=False),
            input_signature=[tf.TensorSpec([1, None, self.num_features], tf.float32)],
        )

    def __call__(self, features) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)
        if features.ndim == 1:
            features = features[np.newaxis]
        scores = []
        for start in range(0, len(features), BATCH_ROWS):
            batch = features[start : start + BATCH_ROWS]
            scores.append(np.asarray(self._score(batch[np.newaxis]), dtype=np.float64)[0])
        self.rows_scored += len(features)
        return np.concatenate(scores) if scores else np.zeros(0)


def max_score_difference(model, scorer: DocumentScorer, queries) -> float:
    """Return the largest |query-batched score - per-document score| over the queries' documents."""
    from common import ranking

    batched = ranking.score_queries(model, queries, batch_size=32)
    single = [scorer(query.features) for query in queries]
    return max(float(np.max(np.abs(a - b))) for a, b in zip(batched, single, strict=True))


def aggregate_shap_values(values: np.ndarray, method: str) -> np.ndarray:
    """Aggregate local SHAP values [rows, features] into one global value per feature.

    The definitions are Clarify's, from the SageMaker developer guide ("Configure the
    analysis", methods.shap.agg_method): mean_abs is the mean of |phi|, median is the
    median of the signed phi, and mean_sq is the mean of phi squared.
    Raises ValueError for another method or for zero rows.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"expected SHAP values of shape [rows >= 1, features], got {values.shape}")
    if method == "mean_abs":
        return np.mean(np.abs(values), axis=0)
    if method == "median":
        return np.median(values, axis=0)
    if method == "mean_sq":
        return np.mean(np.square(values), axis=0)
    raise ValueError(f"unknown agg_method {method!r}, expected one of: {', '.join(AGG_METHODS)}")


@dataclass
class Baseline:
    """Background rows of Kernel SHAP, with weights that sum to 1."""

    rows: np.ndarray  # float64 [baseline rows, features], in model input units
    weights: np.ndarray  # float64 [baseline rows]
    description: dict


def kmeans_baseline(features: np.ndarray, num_clusters: int, seed: int) -> Baseline:
    """Cluster the rows with k-means and weight each centre by the size of its cluster.

    Without a baseline, Clarify also clusters the dataset. shap.kmeans moves each centre
    coordinate to the nearest value of that feature in the data.
    """
    import shap

    rows = features
    if len(rows) > KMEANS_MAX_ROWS:
        chosen = np.random.default_rng(seed).choice(len(rows), KMEANS_MAX_ROWS, replace=False)
        rows = rows[np.sort(chosen)]
    summary = shap.kmeans(rows, num_clusters)
    weights = np.asarray(summary.weights, dtype=np.float64)
    return Baseline(
        rows=np.asarray(summary.data, dtype=np.float64),
        weights=weights / weights.sum(),
        description={"method": "kmeans", "num_clusters": num_clusters, "clustered_rows": len(rows)},
    )


def mean_baseline(features: np.ndarray) -> Baseline:
    """Return one background row: the mean of each feature."""
    return Baseline(
        rows=features.mean(axis=0, keepdims=True),
        weights=np.ones(1),
        description={"method": "mean"},
    )


def rows_baseline(rows: np.ndarray, path: str) -> Baseline:
    """Return the given rows as equally weighted background rows."""
    return Baseline(
        rows=np.asarray(rows, dtype=np.float64),
        weights=np.full(len(rows), 1.0 / len(rows)),
        description={"method": "file", "path": path},
    )


@dataclass
class Explanation:
    """Local SHAP values of the explained rows and how they were computed."""

    values: np.ndarray  # [rows, explained features]
    # Summed SHAP value of the features left out of features_to_explain, or None.
    other_features: np.ndarray | None
    expected_value: float  # weighted mean score of the baseline rows
    scores: np.ndarray  # [rows], the model's score of each explained row
    num_samples: int  # coalitions evaluated per row
    players: int
    exact: bool
    seconds: float
    rows_scored: int


def automatic_num_samples(players: int) -> int:
    """Return shap's "auto" num_samples, 2 * players + 2048 (shap 0.51 KernelExplainer)."""
    return 2 * players + 2048


def explain_rows(
    scorer: DocumentScorer,
    rows: np.ndarray,
    baseline: Baseline,
    explained: list[int],
    num_samples: int | None,
    seed: int,
) -> Explanation:
    """Compute Kernel SHAP values of the scorer on `rows` for the `explained` feature indices.

    Features outside `explained` form one extra player, so the values still add up to
    score - expected_value when that player's value is included.
    """
    # NOTE: Clarify does not document how it treats the features left out of
    # features_to_explain. One joint player keeps expected_value equal to that of all features.
    import shap
    from shap.utils._legacy import DenseData

    num_features = rows.shape[1]
    chosen = set(explained)
    others = [index for index in range(num_features) if index not in chosen]
    groups = [np.array([index]) for index in explained]
    group_names = [str(index) for index in explained]
    if others:
        groups.append(np.array(others))
        group_names.append("other_features")
    # KernelExplainer takes feature groups only through shap's legacy DenseData (shap 0.51).
    background = DenseData(baseline.rows, group_names, groups, baseline.weights.copy())

    players = len(groups)
    requested = num_samples if num_samples is not None else automatic_num_samples(players)
    # KernelExplainer never evaluates more than all 2^M - 2 proper, non-empty coalitions.
    all_coalitions = 2**players - 2 if players <= 30 else None
    effective = min(requested, all_coalitions) if all_coalitions is not None else requested
    exact = all_coalitions is not None and requested >= all_coalitions

    started = time.monotonic()
    rows_scored_before = scorer.rows_scored
    explainer = shap.KernelExplainer(scorer, background)
    # KernelExplainer draws coalitions from NumPy's global generator.
    np.random.seed(seed)
    chunks = []
    for start in range(0, len(rows), ROWS_PER_PROGRESS_LINE):
        chunk = rows[start : start + ROWS_PER_PROGRESS_LINE]
        # l1_reg=False keeps every feature: shap's default keeps only the top 10.
        chunks.append(
            np.asarray(
                explainer.shap_values(chunk, nsamples=requested, l1_reg=False, silent=True),
                dtype=np.float64,
            ).reshape(len(chunk), players)
        )
        log.info(
            "explained %d of %d rows in %.1f s",
            start + len(chunk),
            len(rows),
            time.monotonic() - started,
        )
    values = np.concatenate(chunks)
    scores = scorer(rows)
    return Explanation(
        values=values[:, : len(explained)],
        other_features=values[:, -1] if others else None,
        expected_value=float(np.ravel(explainer.expected_value)[0]),
        scores=scores,
        num_samples=effective,
        players=players,
        exact=exact,
        seconds=time.monotonic() - started,
        rows_scored=scorer.rows_scored - rows_scored_before,
    )


def partial_dependence(
    scorer: DocumentScorer, rows: np.ndarray, feature: int, name: str, grid_resolution: int
) -> dict:
    """Return Clarify's PDP entry for one numerical feature, averaged over `rows`.

    The feature's range in `rows` is cut into `grid_resolution` buckets of equal width.
    feature_values contains the bucket centres, model_predictions the mean score with the
    feature set to each centre (one list per model output), and data_distribution the
    fraction of rows in each bucket. A constant feature gets a single bucket.
    """
    # NOTE: Clarify computes partial dependence on the whole dataset and infers categorical
    # features, but this averages over the explained sample and treats every feature as numerical.
    values = rows[:, feature]
    low, high = float(values.min()), float(values.max())
    if low == high:
        centres = np.array([low])
        distribution = np.array([1.0])
    else:
        edges = np.linspace(low, high, grid_resolution + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        distribution = np.histogram(values, bins=edges)[0] / len(values)
    predictions = []
    for centre in centres:
        modified = rows.copy()
        modified[:, feature] = centre
        predictions.append(float(np.mean(scorer(modified))))
    return {
        "feature_name": name,
        "data_type": "numerical",
        "feature_values": [float(value) for value in centres],
        "model_predictions": [predictions],
        "data_distribution": [float(value) for value in distribution],
    }

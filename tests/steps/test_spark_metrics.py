"""The Spark metric definitions used by evaluate agree with the numpy ones in common.metrics."""

from __future__ import annotations

import os

import pytest

from common import letor, metrics
from tests.steps.steprunner import FIXTURE_FEATURES, FIXTURES


def fixture_rows():
    """Return (qid, doc, label, score) rows of the fixtures, with many tied scores."""
    rows = []
    docs_seen: dict[int, int] = {}
    for name in ("part-1.txt", "part-2.txt"):
        for _, line in letor.parse_file(str(FIXTURES / "letor" / name), FIXTURE_FEATURES, 4):
            doc = docs_seen.get(line.qid, 0)
            docs_seen[line.qid] = doc + 1
            # One decimal of a feature mix: a usable ranking with frequent ties.
            score = round(line.features[0] + line.features[2] - line.features[4], 1)
            rows.append((line.qid, doc, line.label, score))
    return rows


@pytest.mark.parametrize("threshold", [1, 3])
def test_spark_metrics_match_numpy(spark, threshold):
    from common.spark_metrics import query_metrics_frame

    rows = fixture_rows()
    frame = spark.createDataFrame(rows, "qid long, doc long, label int, score double")
    spark_values = {
        row.qid: row.asDict()
        for row in query_metrics_frame(frame, relevance_threshold=threshold).collect()
    }

    by_query: dict[int, list[tuple[int, int, float]]] = {}
    for qid, doc, label, score in rows:
        by_query.setdefault(qid, []).append((doc, label, score))
    assert sorted(spark_values) == sorted(by_query)
    for qid, documents in by_query.items():
        documents.sort()
        labels = [label for _, label, _ in documents]
        scores = [score for _, _, score in documents]
        expected = metrics.query_metrics(labels, scores, threshold)
        for name, value in expected.items():
            assert spark_values[qid][name] == pytest.approx(value, rel=1e-12, abs=1e-12), (
                qid,
                name,
            )
        assert spark_values[qid]["documents"] == len(documents)


def test_spark_metrics_handle_query_without_relevant_documents(spark):
    from common.spark_metrics import query_metrics_frame

    frame = spark.createDataFrame(
        [(1, 0, 0, 0.5), (1, 1, 0, 0.7)], "qid long, doc long, label int, score double"
    )
    (row,) = query_metrics_frame(frame).collect()
    assert (row.ndcg_at_10, row.mrr, row.map, row.relevant_documents) == (0.0, 0.0, 0.0, 0)


def test_driver_takes_spark_submit_opts(spark):
    """spark-submit passes SPARK_SUBMIT_OPTS to the driver JVM, which local jobs rely on."""
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    options = list(runtime.getInputArguments())
    expected = os.environ["SPARK_SUBMIT_OPTS"].split()
    assert expected
    assert all(option in options for option in expected), options

"""Per-query ranking metrics as Spark DataFrame operations.

The definitions match `common.metrics`, which documents them: documents ranked by score
descending with ties in doc order, NDCG gain 2^label - 1 with a log2 discount and 0 for
a query without a positive label, and MRR and MAP with relevance meaning
label >= relevance_threshold.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

NDCG_CUTOFFS = (1, 5, 10)


def query_metrics_frame(
    frame: DataFrame,
    score_column: str = "score",
    keys: tuple[str, ...] = ("qid",),
    relevance_threshold: float = 1,
) -> DataFrame:
    """Return one row per query with `keys`, documents, relevant_documents and each metric.

    `frame` needs the columns in `keys`, `doc`, `label` and `score_column`. Extra keys (for
    example a feature position) evaluate several rankings of the same queries at once.
    """
    keys = list(keys)
    label = F.col("label").cast("double")
    ranked = frame.select(*keys, "doc", label.alias("label"), F.col(score_column).alias("score"))
    ranked = ranked.withColumn(
        "rank",
        F.row_number().over(
            Window.partitionBy(*keys).orderBy(F.col("score").desc(), F.col("doc").asc())
        ),
    ).withColumn(
        "ideal_rank",
        F.row_number().over(
            Window.partitionBy(*keys).orderBy(F.col("label").desc(), F.col("doc").asc())
        ),
    )
    relevant = (F.col("label") >= F.lit(float(relevance_threshold))).cast("int")
    ranked = ranked.withColumn("relevant", relevant).withColumn(
        "relevant_so_far",
        F.sum("relevant").over(
            Window.partitionBy(*keys)
            .orderBy("rank")
            .rowsBetween(Window.unboundedPreceding, Window.currentRow)
        ),
    )

    gain = F.pow(F.lit(2.0), F.col("label")) - F.lit(1.0)
    aggregates = [
        F.count("*").alias("documents"),
        F.sum("relevant").alias("relevant_documents"),
        F.min(F.when(F.col("relevant") == 1, F.col("rank"))).alias("first_relevant_rank"),
        F.sum(F.when(F.col("relevant") == 1, F.col("relevant_so_far") / F.col("rank"))).alias(
            "precision_sum"
        ),
    ]
    for k in NDCG_CUTOFFS:
        aggregates.append(
            F.sum(
                F.when(F.col("rank") <= k, gain / F.log2(F.col("rank") + 1)).otherwise(0.0)
            ).alias(f"dcg_{k}")
        )
        aggregates.append(
            F.sum(
                F.when(F.col("ideal_rank") <= k, gain / F.log2(F.col("ideal_rank") + 1)).otherwise(
                    0.0
                )
            ).alias(f"ideal_dcg_{k}")
        )
    per_query = ranked.groupBy(*keys).agg(*aggregates)

    columns = [*keys, "documents", "relevant_documents"]
    for k in NDCG_CUTOFFS:
        columns.append(
            F.when(F.col(f"ideal_dcg_{k}") > 0, F.col(f"dcg_{k}") / F.col(f"ideal_dcg_{k}"))
            .otherwise(0.0)
            .alias(f"ndcg_at_{k}")
        )
    columns.append(
        F.when(F.col("first_relevant_rank").isNotNull(), 1.0 / F.col("first_relevant_rank"))
        .otherwise(0.0)
        .alias("mrr")
    )
    columns.append(
        F.when(
            F.col("relevant_documents") > 0, F.col("precision_sum") / F.col("relevant_documents")
        )
        .otherwise(0.0)
        .alias("map")
    )
    return per_query.select(*columns)

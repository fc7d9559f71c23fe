"""Evaluate step (SageMaker Processing, PySpark): ranking metrics of the test predictions.

Computes NDCG@1, NDCG@5, NDCG@10, MRR and MAP per test query for the model and two
baselines, and writes `evaluation.json` (mean and population standard deviation over
queries, in the shape a SageMaker PropertyFile reads) and `per_query.csv`.

Baselines:
* random: each document's score is xxhash64(seed, qid, doc), a seeded random order that
  does not depend on Spark's partitioning.
* best_single_feature: the feature whose values, highest first, give the best mean
  NDCG@10 on the validation split (ties go to the lower index), scored on the test rows.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import csv  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from common import contract  # noqa: E402
from common.contract import StepError  # noqa: E402
from common.metrics import METRIC_NAMES  # noqa: E402

log = logging.getLogger("evaluate")

# The rankings compared: the model's scores and the two baselines.
SCORERS = ("model", "random", "best_single_feature")


def parse_arguments(argv=None):
    parser = contract.ArgumentParser(prog="evaluate.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--predictions-dir",
        default="/opt/ml/processing/input/predictions",
        help="folder with the predict step's Parquet files",
    )
    parser.add_argument(
        "--validation-dir",
        default="/opt/ml/processing/input/validation",
        help="folder with the validation split, used to pick the best single feature",
    )
    parser.add_argument(
        "--schema-dir", default=None, help="optional folder with schema.json, for feature names"
    )
    parser.add_argument(
        "--output-dir",
        default="/opt/ml/processing/output/evaluation",
        help="folder that receives evaluation.json and per_query.csv",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the random baseline")
    parser.add_argument(
        "--relevance-threshold",
        type=float,
        default=1,
        help="lowest label that MRR and MAP count as relevant",
    )
    return parser.parse_args(argv)


def feature_names(schema_dir, num_features):
    """Return the names from schema.json when it exists, else f1, f2, ..."""
    default = [f"f{index}" for index in range(1, num_features + 1)]
    if not schema_dir:
        return default
    path = os.path.join(schema_dir, "schema.json")
    if not os.path.isfile(path):
        log.warning("%s not found; naming features f1 to f%d", path, num_features)
        return default
    with open(path, encoding="utf-8") as file:
        names = json.load(file).get("feature_names") or default
    if len(names) != num_features:
        raise StepError(f"{path} names {len(names)} features but the rows have {num_features}")
    return names


def read_parquet_folder(spark, folder, description):
    from common import dataset

    paths = dataset.list_parquet_files(folder)
    if not paths:
        raise StepError(f"no Parquet files found in the {description} folder {folder}")
    return spark.read.parquet(*paths)


def check_predictions(predictions, folder):
    """Return the number of features per row, after checking the predictions in one pass.

    Raises StepError for no rows, a missing or non-finite score, a document scored twice
    and rows whose feature lists differ in length.
    """
    from pyspark.sql import functions as F

    score = F.col("score")
    invalid = score.isNull() | F.isnan(score) | score.isin(float("inf"), float("-inf"))
    totals = predictions.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(invalid.cast("int")).alias("invalid"),
        F.count_distinct("qid", "doc").alias("documents"),
        F.min(F.size("features")).alias("fewest_features"),
        F.max(F.size("features")).alias("most_features"),
    ).first()
    if totals.rows == 0:
        raise StepError(f"the predictions in {folder} contain no rows")
    if totals.invalid:
        raise StepError(f"{totals.invalid} predictions have a missing, NaN or infinite score")
    if totals.documents < totals.rows:
        duplicates = predictions.groupBy("qid", "doc").count().filter(F.col("count") > 1)
        examples = duplicates.orderBy("qid", "doc").limit(3).collect()
        listed = ", ".join(f"qid {row.qid} doc {row.doc}" for row in examples)
        raise StepError(
            f"{totals.rows - totals.documents} prediction rows repeat a document ({listed}); "
            f"was a test file given to two predict instances?"
        )
    if totals.fewest_features != totals.most_features:
        raise StepError(
            f"the feature lists in {folder} have between {totals.fewest_features} and "
            f"{totals.most_features} values; every row needs the same number"
        )
    return int(totals.most_features)


def choose_best_feature(validation, relevance_threshold):
    """Return (feature position, mean validation NDCG@10) of the best single feature."""
    from pyspark.sql import functions as F

    from common.spark_metrics import query_metrics_frame

    exploded = validation.select(
        "qid", "doc", "label", F.posexplode("features").alias("position", "value")
    )
    per_query = query_metrics_frame(
        exploded,
        score_column="value",
        keys=("position", "qid"),
        relevance_threshold=relevance_threshold,
    )
    means = (
        per_query.groupBy("position")
        .agg(F.mean("ndcg_at_10").alias("ndcg_at_10"))
        .orderBy(F.col("ndcg_at_10").desc(), F.col("position").asc())
        .first()
    )
    return int(means.position), float(means.ndcg_at_10)


def summarize(per_query_rows, scorer):
    """Return {metric: {"value": mean, "standard_deviation": population std}} over the
    queries of one scorer."""
    rows = [row for row in per_query_rows if row.scorer == scorer]
    return {
        name: {
            "value": statistics.fmean(row[name] for row in rows),
            "standard_deviation": statistics.pstdev([float(row[name]) for row in rows]),
        }
        for name in METRIC_NAMES
    }


def stack_scorers(predictions, seed, feature_position):
    """Return qid, doc, label and score rows for each scorer, distinguished by a `scorer` column.

    One long frame evaluates the model and both baselines in the same Spark jobs.
    """
    from pyspark.sql import functions as F

    scorers = {
        "model": F.col("score"),
        "random": F.xxhash64(F.lit(seed), "qid", "doc").cast("double"),
        "best_single_feature": F.element_at("features", feature_position + 1),
    }
    stacked = None
    for name, score in scorers.items():
        frame = predictions.select(
            F.lit(name).alias("scorer"), "qid", "doc", "label", score.alias("score")
        )
        stacked = frame if stacked is None else stacked.unionByName(frame)
    return stacked


def main():
    contract.configure_logging("evaluate")
    args = parse_arguments()
    started = time.monotonic()

    from common.spark import create_spark_session
    from common.spark_metrics import query_metrics_frame

    spark = create_spark_session("evaluate")
    try:
        predictions = read_parquet_folder(spark, args.predictions_dir, "predictions")
        validation = read_parquet_folder(spark, args.validation_dir, "validation")
        num_features = check_predictions(predictions, args.predictions_dir)
        names = feature_names(args.schema_dir, num_features)

        threshold = args.relevance_threshold
        position, validation_ndcg = choose_best_feature(validation, threshold)
        log.info(
            "best single feature on validation: %s (NDCG@10 %.4f)", names[position], validation_ndcg
        )

        stacked = stack_scorers(predictions, args.seed, position)
        # One Spark job gives every query's metrics; the means over a few thousand queries
        # are computed here, which spares a second job.
        per_query_rows = (
            query_metrics_frame(stacked, keys=("scorer", "qid"), relevance_threshold=threshold)
            .orderBy("qid", "scorer")
            .collect()
        )
    finally:
        spark.stop()

    summaries = {name: summarize(per_query_rows, name) for name in SCORERS}
    queries = sum(1 for row in per_query_rows if row.scorer == "model")
    threshold_value = int(threshold) if float(threshold).is_integer() else threshold
    evaluation = {
        "ranking_metrics": summaries["model"],
        "baselines": {
            "random": summaries["random"],
            "best_single_feature": {
                "feature": names[position],
                "validation_ndcg_at_10": validation_ndcg,
                **summaries["best_single_feature"],
            },
        },
        "queries": queries,
        "queries_without_relevant_documents": sum(
            1 for row in per_query_rows if row.scorer == "model" and row.relevant_documents == 0
        ),
        "relevance_threshold": threshold_value,
    }
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "evaluation.json"), "w", encoding="utf-8") as file:
        json.dump(evaluation, file, indent=2)
    write_per_query(os.path.join(args.output_dir, "per_query.csv"), per_query_rows)
    log.info(
        "%d queries: NDCG@10 model %.4f, random %.4f, best single feature %s %.4f (%.1f s)",
        queries,
        summaries["model"]["ndcg_at_10"]["value"],
        summaries["random"]["ndcg_at_10"]["value"],
        names[position],
        summaries["best_single_feature"]["ndcg_at_10"]["value"],
        time.monotonic() - started,
    )


def write_per_query(path, per_query_rows):
    """Write one CSV row per query: the model's metrics and the baselines' NDCG@10."""
    by_query = {}
    for row in per_query_rows:
        by_query.setdefault(row.qid, {})[row.scorer] = row
    columns = [
        "qid",
        "documents",
        "relevant_documents",
        *METRIC_NAMES,
        "random_ndcg_at_10",
        "best_single_feature_ndcg_at_10",
    ]
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for qid in sorted(by_query):
            model = by_query[qid]["model"]
            writer.writerow(
                [
                    qid,
                    model.documents,
                    model.relevant_documents,
                    *(f"{model[name]:.6f}" for name in METRIC_NAMES),
                    f"{by_query[qid]['random'].ndcg_at_10:.6f}",
                    f"{by_query[qid]['best_single_feature'].ndcg_at_10:.6f}",
                ]
            )


if __name__ == "__main__":
    contract.run_step(main)

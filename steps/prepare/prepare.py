"""Prepare step (SageMaker Processing, PySpark): LETOR text files to normalised Parquet splits.

Reads every file under --input-dir, validates the LETOR lines, splits the queries into
train, validation and test, normalises the features with the train split's mean and
standard deviation, and writes:

* `<output-dir>/train`, `validation`, `test`: Parquet with qid (long), doc (long), label
  (int) and features (array<double>). The test split has --test-shards files, each with
  whole queries.
* `<output-dir>/schema/schema.json` and `statistics.json`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

from common import contract, letor  # noqa: E402
from common.contract import StepError  # noqa: E402

log = logging.getLogger("prepare")

SPLITS = ("train", "validation", "test")


def parse_arguments(argv=None):
    parser = contract.ArgumentParser(prog="prepare.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input-dir",
        default="/opt/ml/processing/input/raw",
        help="folder with LETOR text files, read recursively",
    )
    parser.add_argument(
        "--output-dir",
        default="/opt/ml/processing/output",
        help="folder that receives train/, validation/, test/ and schema/",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="share of the queries in the validation split",
    )
    parser.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of the queries in the test split"
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the query split")
    parser.add_argument(
        "--num-features",
        type=int,
        default=136,
        help="number of features; feature indices run from 1 to this",
    )
    parser.add_argument("--max-label", type=int, default=4, help="highest relevance label")
    parser.add_argument(
        "--test-shards",
        type=int,
        default=4,
        help="number of test Parquet files, one per predict instance or more",
    )
    args = parser.parse_args(argv)
    for name in ("validation_fraction", "test_fraction"):
        value = getattr(args, name)
        if not 0 < value < 1:
            raise StepError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")
    if args.validation_fraction + args.test_fraction >= 1:
        raise StepError(
            f"--validation-fraction + --test-fraction must be below 1 to leave queries for "
            f"training, got {args.validation_fraction} + {args.test_fraction}"
        )
    for name in ("num_features", "max_label", "test_shards"):
        if getattr(args, name) < 1:
            raise StepError(
                f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}"
            )
    return args


def parse_input(spark, paths, num_features, max_label):
    """Parse and validate the LETOR files with Spark and return a DataFrame of valid rows.

    Columns: file (index into `paths`), line (1-based), qid, label, features. Raises
    LetorError listing every invalid line, empty file and query split across files.
    """
    from pyspark.sql import types as T

    from common.spark import hadoop_path

    context = spark.sparkContext
    per_file = []
    for file_index, path in enumerate(paths):
        lines = context.textFile(hadoop_path(path)).zipWithIndex()
        per_file.append(lines.map(lambda pair, f=file_index: (f, pair[1] + 1, pair[0])))
    parsed = (
        context.union(per_file)
        .map(lambda record: _parse_record(record, num_features, max_label))
        .cache()
    )

    names = [os.path.basename(path) for path in paths]
    summaries, rows_per_file = _collect_problems(parsed, names)
    for file_index, name in enumerate(names):
        has_problems = any(s.source == name for s in summaries)
        if not rows_per_file.get(file_index) and not has_problems:
            summaries.append(letor.ProblemSummary(name, letor.EMPTY_FILE))
    if summaries:
        raise letor.LetorError(letor.format_problems(summaries, num_features, max_label))

    schema = T.StructType(
        [
            T.StructField("file", T.IntegerType(), False),
            T.StructField("line", T.LongType(), False),
            T.StructField("qid", T.LongType(), False),
            T.StructField("label", T.IntegerType(), False),
            T.StructField("features", T.ArrayType(T.DoubleType(), False), False),
        ]
    )
    rows = spark.createDataFrame(
        parsed.filter(lambda r: r[0] == "row").map(lambda r: r[1:]), schema
    )
    _check_queries_within_one_file(rows, names)
    return rows


def _parse_record(record, num_features, max_label):
    file_index, line_number, text = record
    parsed, problems = letor.parse_line(text, num_features, max_label)
    if problems:
        return ("problems", file_index, line_number, problems)
    if parsed is None:
        return ("skipped",)
    return ("row", file_index, line_number, parsed.qid, parsed.label, list(parsed.features))


def _collect_problems(parsed, names):
    """Return (a ProblemSummary per file and kind, {file index: valid rows}) in one Spark job.

    Each summary keeps only the first few examples, so the driver receives little data
    however many lines are invalid.
    """
    examples_per_problem = letor.EXAMPLES_PER_PROBLEM

    def keyed(record):
        if record[0] == "row":
            return [((record[1], "row"), None)]
        if record[0] == "problems":
            return [((record[1], kind), (record[2], detail)) for kind, detail in record[3]]
        return []

    def add(state, example):
        count, examples = state
        if example is None:
            return count + 1, examples
        return count + 1, sorted(examples + [example])[:examples_per_problem]

    def merge(left, right):
        return left[0] + right[0], sorted(left[1] + right[1])[:examples_per_problem]

    grouped = parsed.flatMap(keyed).aggregateByKey((0, []), add, merge).collect()
    summaries, rows_per_file = [], {}
    for (file_index, kind), (count, examples) in grouped:
        if kind == "row":
            rows_per_file[file_index] = count
            continue
        summary = letor.ProblemSummary(names[file_index], kind, count)
        summary.examples = [tuple(example) for example in examples]
        summaries.append(summary)
    return summaries, rows_per_file


def _check_queries_within_one_file(rows, names):
    from pyspark.sql import functions as F

    split_queries = (
        rows.groupBy("qid")
        .agg(F.sort_array(F.collect_set("file")).alias("files"))
        .filter(F.size("files") > 1)
        .orderBy("qid")
    )
    examples = split_queries.limit(5).collect()
    if examples:
        total = split_queries.count()
        listed = "; ".join(
            f"qid {row.qid} in {', '.join(names[i] for i in row.files)}" for row in examples
        )
        raise letor.LetorError(
            f"invalid LETOR input: {total} queries appear in more than one file ({listed}). "
            f"Each query's documents must be in one file, so that their positions are defined."
        )


def split_queries(qids, validation_fraction, test_fraction, seed):
    """Shuffle the qids with `seed` and return ({qid: split}, test qids in shuffled order).

    Test and validation get round(fraction * queries) queries each, at least one, and
    train gets the rest. Raises StepError when a split would be empty.
    """
    # Ordering by a hash of seed and qid is a seeded shuffle that no library version can
    # change, unlike random.shuffle, whose sequence Python does not promise to keep.
    qids = sorted(qids, key=lambda qid: hashlib.sha256(f"{seed}:{qid}".encode()).digest())
    count = len(qids)
    test_count = max(1, math.floor(count * test_fraction + 0.5))
    validation_count = max(1, math.floor(count * validation_fraction + 0.5))
    train_count = count - test_count - validation_count
    if train_count < 1:
        raise StepError(
            f"too few queries to split: found {count}, and test and validation take "
            f"{test_count} and {validation_count}, leaving {train_count} for train. Provide at "
            f"least 3 queries, or lower --test-fraction and --validation-fraction."
        )
    assignment = {qid: "test" for qid in qids[:test_count]}
    assignment.update(
        {qid: "validation" for qid in qids[test_count : test_count + validation_count]}
    )
    assignment.update({qid: "train" for qid in qids[test_count + validation_count :]})
    return assignment, qids[:test_count]


def feature_statistics(rows, num_features):
    """Return {split: {"min": [...], "max": [...], "mean": [...], "std": [...]}} of raw features.

    `std` is the population standard deviation. Only splits present in `rows` appear.
    """
    from pyspark.sql import functions as F

    exploded = rows.select("split", F.posexplode("features").alias("position", "value"))
    aggregated = (
        exploded.groupBy("split", "position")
        .agg(
            F.min("value").alias("min"),
            F.max("value").alias("max"),
            F.mean("value").alias("mean"),
            F.stddev_pop("value").alias("std"),
        )
        .collect()
    )
    statistics = {}
    for row in aggregated:
        split = statistics.setdefault(
            row.split, {key: [0.0] * num_features for key in ("min", "max", "mean", "std")}
        )
        for key in ("min", "max", "mean", "std"):
            split[key][row.position] = float(row[key])
    return statistics


def normalize(rows, mean, std):
    """Return `rows` with features replaced by (value - mean) / std, per feature."""
    from pyspark.sql import functions as F

    mean_array = F.array(*[F.lit(float(value)) for value in mean])
    std_array = F.array(*[F.lit(float(value)) for value in std])
    return rows.withColumn(
        "features",
        F.transform(
            "features",
            lambda value, index: (
                (value - F.element_at(mean_array, index + 1)) / F.element_at(std_array, index + 1)
            ),
        ),
    )


def write_split(spark, rows, folder, prefix):
    """Write rows sorted by qid and doc as Parquet and return the file paths."""
    from common.spark import tidy_parquet_output

    rows.select("qid", "doc", "label", "features").orderBy("qid", "doc").write.mode(
        "overwrite"
    ).parquet(folder)
    return tidy_parquet_output(folder, prefix)


def write_test_shards(spark, rows, folder, shard_of_qid, shards):
    """Write the test rows as one Parquet file per shard, each with whole queries."""
    from common.spark import tidy_parquet_output

    schema = rows.select("qid", "doc", "label", "features").schema
    keyed = rows.select("qid", "doc", "label", "features").rdd.map(
        lambda row: (shard_of_qid[row.qid], tuple(row))
    )
    # Partition i receives exactly shard i, so each shard becomes one part file.
    partitioned = keyed.partitionBy(shards, lambda shard: shard).values()
    spark.createDataFrame(partitioned, schema).sortWithinPartitions("qid", "doc").write.mode(
        "overwrite"
    ).parquet(folder)
    return tidy_parquet_output(folder, "test")


def main():
    contract.configure_logging("prepare")
    args = parse_arguments()
    started = time.monotonic()
    paths = letor.list_input_files(args.input_dir)
    log.info("reading %d LETOR file(s) from %s", len(paths), args.input_dir)

    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from common.spark import create_spark_session

    spark = create_spark_session("prepare")
    try:
        rows = parse_input(spark, paths, args.num_features, args.max_label)

        # A document's position in its query, counted in file order from 0.
        rows = rows.withColumn(
            "doc", F.row_number().over(Window.partitionBy("qid").orderBy("file", "line")) - 1
        ).withColumn("doc", F.col("doc").cast("long"))

        qids = [row.qid for row in rows.select("qid").distinct().collect()]
        assignment, test_qids = split_queries(
            qids, args.validation_fraction, args.test_fraction, args.seed
        )
        shards = min(args.test_shards, len(test_qids))
        if shards < args.test_shards:
            log.warning(
                "only %d test queries, so the test split has %d files instead of --test-shards %d",
                len(test_qids),
                shards,
                args.test_shards,
            )
        shard_of_qid = {qid: position % shards for position, qid in enumerate(test_qids)}
        split_frame = spark.createDataFrame(sorted(assignment.items()), "qid long, split string")
        rows = rows.join(F.broadcast(split_frame), "qid").cache()

        statistics = feature_statistics(rows, args.num_features)
        mean = statistics["train"]["mean"]
        # A constant feature keeps its centred value 0 instead of dividing by 0.
        std = [value if value > 0 else 1.0 for value in statistics["train"]["std"]]
        normalized = normalize(rows, mean, std)

        output = args.output_dir
        files = {}
        for split in ("train", "validation"):
            files[split] = write_split(
                spark,
                normalized.filter(F.col("split") == split),
                os.path.join(output, split),
                split,
            )
        files["test"] = write_test_shards(
            spark,
            normalized.filter(F.col("split") == "test"),
            os.path.join(output, "test"),
            shard_of_qid,
            shards,
        )

        counts = {
            row.split: {"queries": row.queries, "rows": row.rows}
            for row in rows.groupBy("split")
            .agg(F.countDistinct("qid").alias("queries"), F.count("*").alias("rows"))
            .collect()
        }
        labels = {split: {} for split in SPLITS}
        for row in rows.groupBy("split", "label").count().orderBy("label").collect():
            labels[row.split][str(row.label)] = row["count"]
    finally:
        spark.stop()

    write_schema(args, output, counts, labels, statistics, mean, std, files)
    log.info(
        "wrote %s in %.1f s",
        ", ".join(
            f"{split} {counts[split]['queries']} queries/{counts[split]['rows']} rows"
            for split in SPLITS
        ),
        time.monotonic() - started,
    )


def write_schema(args, output, counts, labels, statistics, mean, std, files):
    feature_names = [f"f{index}" for index in range(1, args.num_features + 1)]
    schema = {
        "num_features": args.num_features,
        "feature_names": feature_names,
        "label_range": [0, args.max_label],
        "normalization": {"method": "standardize", "mean": mean, "std": std},
        "splits": {split: counts[split] for split in SPLITS},
        "test_shards": len(files["test"]),
        "seed": args.seed,
    }
    split_statistics = {}
    for split in SPLITS:
        split_statistics[split] = {
            **counts[split],
            "label_distribution": labels[split],
            "features": {key: statistics[split][key] for key in ("min", "max", "mean")},
        }
    document = {
        "description": "Counts per split, label distribution, and per-feature min, max and "
        "mean of the raw features before normalisation, indexed like feature_names.",
        "feature_names": feature_names,
        "splits": split_statistics,
    }
    schema_dir = os.path.join(output, "schema")
    os.makedirs(schema_dir, exist_ok=True)
    with open(os.path.join(schema_dir, "schema.json"), "w", encoding="utf-8") as file:
        json.dump(schema, file, indent=2)
    with open(os.path.join(schema_dir, "statistics.json"), "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)


if __name__ == "__main__":
    contract.run_step(main)

"""Explain step (SageMaker Processing, TensorFlow and shap): SHAP values of the ranker's scores.

Explains the model's score of each document on a seeded sample of test queries with
shap's KernelExplainer, the Kernel SHAP algorithm that SageMaker Clarify runs, and writes
Clarify's outputs to the output folder:

* analysis.json: global SHAP values and the expected value under
  explanations.kernel_shap.score, partial dependence under explanations.pdp, and how the
  values were computed under explainer.
* explanations_shap/out.csv, with --save-local-shap-values true: the local SHAP values,
  one row per explained document and one column per explained feature. Clarify adds at
  most one identifier column, but a document is identified by two (qid and doc), so
  explanations_shap/rows.csv lists qid, doc, label and score for each row of out.csv.
* report.html: one self-contained page of inline SVG charts.

The arguments mirror Clarify's SHAPConfig and partial dependence settings. Features,
baseline rows and partial dependence grids are in the model's input units: standardized,
as the test split stores them.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import attribution  # noqa: E402
import numpy as np  # noqa: E402

from common import contract  # noqa: E402
from common.contract import StepError  # noqa: E402

log = logging.getLogger("explain")

# The model output that analysis.json explains, in Clarify's place of a label header.
LABEL = "score"
BASELINE_METHODS = ("kmeans", "mean")
# Feature names shown in one error message before the rest are counted.
NAMES_IN_MESSAGE = 20
# Largest score difference allowed between scoring a document inside its query and alone.
PER_DOCUMENT_TOLERANCE = 1e-4


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_arguments(argv=None):
    parser = contract.ArgumentParser(prog="explain.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir",
        default="/opt/ml/processing/input/model",
        help="folder with model.tar.gz from the train step",
    )
    parser.add_argument(
        "--input-dir",
        default="/opt/ml/processing/input/test",
        help="folder with the test split's Parquet files",
    )
    parser.add_argument(
        "--schema-dir",
        default="/opt/ml/processing/input/schema",
        help="folder with the prepare step's schema.json, for feature names; optional",
    )
    parser.add_argument(
        "--output-dir",
        default="/opt/ml/processing/output/explain",
        help="folder that receives analysis.json, explanations_shap/ and report.html",
    )

    # Clarify's SHAPConfig settings.
    parser.add_argument(
        "--baseline",
        default="kmeans",
        help="background rows of Kernel SHAP: kmeans (cluster the test rows, as Clarify does "
        "without a baseline), mean (one row of feature means) or the path of a CSV file "
        "(no header, one row of feature values per line) or Parquet file (a features column)",
    )
    # NOTE: Clarify picks between 1 and 12 clusters itself when num_clusters is not set,
    # but this step always uses the given number.
    parser.add_argument(
        "--num-clusters",
        type=int,
        default=10,
        help="number of k-means clusters, one baseline row each, with --baseline kmeans",
    )
    parser.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="coalitions that Kernel SHAP evaluates per row; default 2 x features + 2048 "
        "(shap's choice). At least 2^features - 2 gives exact Shapley values",
    )
    parser.add_argument(
        "--agg-method",
        choices=attribution.AGG_METHODS,
        default="mean_abs",
        help="aggregation of local into global SHAP values: mean_abs (mean of |value|), "
        "median (median of the signed values) or mean_sq (mean of squares)",
    )
    parser.add_argument(
        "--save-local-shap-values",
        type=parse_bool,
        default=True,
        help="true or false: write explanations_shap/out.csv and rows.csv",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="seed of the query sample and of Kernel SHAP"
    )
    parser.add_argument(
        "--features-to-explain",
        default=None,
        help="comma-separated feature names or zero-based indices to explain; default all. "
        "The other features count as one player, reported in rows.csv as other_features",
    )

    # The sample to explain and Clarify's partial dependence settings.
    parser.add_argument(
        "--max-queries",
        type=int,
        default=20,
        help="number of test queries to explain, drawn with --seed; every document of a "
        "drawn query is explained",
    )
    parser.add_argument(
        "--pdp-grid-resolution",
        type=int,
        default=20,
        help="number of equal-width buckets of each partial dependence plot",
    )
    parser.add_argument(
        "--pdp-top-k-features",
        type=int,
        default=10,
        help="number of features with the largest global SHAP values that get a partial "
        "dependence plot; 0 turns partial dependence off",
    )

    args = parser.parse_args(argv)
    check_arguments(args)
    return args


def check_arguments(args) -> None:
    """Raise StepError for settings that are invalid before any data is read."""
    if args.num_samples is not None and args.num_samples < 1:
        raise StepError(f"--num-samples must be at least 1, got {args.num_samples}")
    if args.num_clusters < 1:
        raise StepError(f"--num-clusters must be at least 1, got {args.num_clusters}")
    if args.max_queries < 1:
        raise StepError(f"--max-queries must be at least 1, got {args.max_queries}")
    if args.pdp_grid_resolution < 2:
        raise StepError(f"--pdp-grid-resolution must be at least 2, got {args.pdp_grid_resolution}")
    if args.pdp_top_k_features < 0:
        raise StepError(f"--pdp-top-k-features must be 0 or more, got {args.pdp_top_k_features}")
    if args.baseline not in BASELINE_METHODS and not os.path.exists(args.baseline):
        raise StepError(
            f"--baseline {args.baseline!r} is neither kmeans, mean nor an existing file; "
            "pass kmeans, mean or the path of a CSV or Parquet file of baseline rows"
        )


def load_feature_names(schema_dir: str | None, num_features: int):
    """Return (feature names, normalization or None) from schema.json, else f1, f2, ...

    The normalization is schema.json's {"mean": [...], "std": [...]} when it has one entry
    per feature. The report uses it to show feature values before standardization.
    """
    default = [f"f{index}" for index in range(1, num_features + 1)]
    path = os.path.join(schema_dir, "schema.json") if schema_dir else None
    if path is None or not os.path.isfile(path):
        log.warning(
            "schema.json not found in %s; naming features f1 to f%d", schema_dir, num_features
        )
        return default, None
    try:
        with open(path, encoding="utf-8") as file:
            schema = json.load(file)
    except (OSError, json.JSONDecodeError) as error:
        raise StepError(f"failed to read {path}: {error}") from error

    names = [str(name) for name in schema.get("feature_names") or default]
    if len(names) != num_features:
        raise StepError(f"{path} names {len(names)} features but the test rows have {num_features}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise StepError(f"{path} repeats the feature name(s) {', '.join(duplicates)}")

    normalization = schema.get("normalization") or {}
    mean, std = normalization.get("mean"), normalization.get("std")
    if isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == num_features:
        return names, {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    return names, None


def describe_names(names: list[str]) -> str:
    listed = ", ".join(names[:NAMES_IN_MESSAGE])
    if len(names) > NAMES_IN_MESSAGE:
        listed += f" and {len(names) - NAMES_IN_MESSAGE} more"
    return listed


def resolve_features_to_explain(text: str | None, names: list[str]) -> list[int]:
    """Return the zero-based indices that --features-to-explain selects, in the given order.

    Each comma-separated item is a feature name, or else a zero-based index as in Clarify's
    features_to_explain. Raises StepError for an unknown name, an index out of range, an
    empty item or a feature listed twice.
    """
    if text is None:
        return list(range(len(names)))
    positions = {name: index for index, name in enumerate(names)}
    indices: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise StepError(f"--features-to-explain {text!r} contains an empty item")
        if item in positions:
            index = positions[item]
        elif item.isdigit():
            index = int(item)
            if index >= len(names):
                raise StepError(
                    f"--features-to-explain: index {index} is out of range; the model has "
                    f"{len(names)} features, indices 0 to {len(names) - 1}"
                )
        else:
            raise StepError(
                f"--features-to-explain: unknown feature {item!r}; expected a zero-based index "
                f"or one of the names {describe_names(names)}"
            )
        if index in indices:
            raise StepError(
                f"--features-to-explain lists feature {names[index]!r} (index {index}) twice"
            )
        indices.append(index)
    return indices


def read_baseline_file(path: str, num_features: int) -> np.ndarray:
    """Read baseline rows from a CSV file without a header or from Parquet's features column.

    A folder is read as Parquet files. Raises StepError for unreadable files, rows of
    another width and values that are not finite numbers.
    """
    from common import dataset

    if os.path.isdir(path) or path.endswith(".parquet"):
        paths = dataset.list_parquet_files(path) if os.path.isdir(path) else [path]
        if not paths:
            raise StepError(f"no Parquet files found in the baseline folder {path}")
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(paths)
        except (OSError, ValueError) as error:
            raise StepError(f"failed to read the baseline {path}: {error}") from error
        if "features" not in table.column_names:
            raise StepError(f"the baseline {path} has no features column")
        rows = dataset.features_matrix(table)
    else:
        try:
            rows = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        except (OSError, ValueError) as error:
            raise StepError(
                f"failed to read the baseline {path}: {error}; expected rows of "
                f"{num_features} comma-separated numbers without a header"
            ) from error
    if len(rows) == 0:
        raise StepError(f"the baseline {path} contains no rows")
    if rows.shape[1] != num_features:
        raise StepError(
            f"the baseline {path} has rows of {rows.shape[1]} values but the model takes "
            f"{num_features} features"
        )
    if not np.all(np.isfinite(rows)):
        raise StepError(f"the baseline {path} contains NaN or infinite values")
    return rows


def choose_queries(qids: np.ndarray, max_queries: int, seed: int) -> np.ndarray:
    """Return up to `max_queries` distinct qids drawn with `seed`, sorted."""
    unique = np.unique(qids)
    if len(unique) <= max_queries:
        return unique
    return np.sort(np.random.default_rng(seed).choice(unique, max_queries, replace=False))


def main():
    contract.configure_logging("explain")
    # shap's KernelExplainer logs every row's regression at INFO.
    logging.getLogger("shap").setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    args = parse_arguments()
    started = time.monotonic()

    table, features = read_test_split(args.input_dir)
    num_features = features.shape[1]
    names, normalization = load_feature_names(args.schema_dir, num_features)
    explained = resolve_features_to_explain(args.features_to_explain, names)
    baseline_rows = check_baseline(args, features)
    qids = table.column("qid").to_numpy()
    chosen = choose_queries(qids, args.max_queries, args.seed)
    log.info(
        "explaining %d of %d test queries, %d features of %d",
        len(chosen),
        len(np.unique(qids)),
        len(explained),
        num_features,
    )

    # TensorFlow takes seconds to import, so the cheap checks above run first.
    model = load_model(args.model_dir, num_features)
    queries = group_chosen_queries(table, features, chosen)
    scorer = attribution.DocumentScorer(model)
    difference = attribution.max_score_difference(model, scorer, queries)
    if difference > PER_DOCUMENT_TOLERANCE:
        raise StepError(
            f"a document's score changes by up to {difference:.3g} when it is scored without "
            "the other documents of its query, so per-document SHAP values cannot explain "
            "this model"
        )

    if args.baseline == "kmeans":
        baseline = attribution.kmeans_baseline(features, args.num_clusters, args.seed)
    elif args.baseline == "mean":
        baseline = attribution.mean_baseline(features)
    else:
        baseline = attribution.rows_baseline(baseline_rows, args.baseline)

    rows = np.concatenate([query.features for query in queries]).astype(np.float64)
    warn_about_few_samples(args.num_samples, explained, num_features)
    explanation = attribution.explain_rows(
        scorer, rows, baseline, explained, args.num_samples, args.seed
    )
    global_values = attribution.aggregate_shap_values(explanation.values, args.agg_method)

    pdp_started = time.monotonic()
    pdp = partial_dependence_of_top_features(args, scorer, rows, names, explained, global_values)
    pdp_seconds = time.monotonic() - pdp_started

    explained_names = [names[index] for index in explained]
    analysis = {
        "version": "1.0",
        "explanations": {
            "kernel_shap": {
                LABEL: {
                    "global_shap_values": {
                        name: float(value)
                        for name, value in zip(explained_names, global_values, strict=True)
                    },
                    "expected_value": explanation.expected_value,
                }
            },
            "pdp": pdp,
        },
        "explainer": describe_explainer(args, baseline, explanation, explained_names, queries),
    }
    analysis["explainer"]["seconds"] = {
        "shap": round(explanation.seconds, 2),
        "partial_dependence": round(pdp_seconds, 2),
        "total": round(time.monotonic() - started, 2),
    }
    write_outputs(
        args, analysis, explained_names, explained, rows, queries, explanation, normalization
    )
    log.info(
        "explained %d rows of %d queries with %d samples per row in %.1f s; wrote %s",
        len(rows),
        len(queries),
        explanation.num_samples,
        time.monotonic() - started,
        args.output_dir,
    )


def read_test_split(input_dir: str):
    """Return the test split's table and its features [rows, features]."""
    from common import dataset

    paths = dataset.list_parquet_files(input_dir)
    if not paths:
        raise StepError(f"no Parquet files found in the test folder {input_dir}")
    table = dataset.read_table(paths)
    if table.num_rows == 0:
        raise StepError(f"the test files in {input_dir} contain no rows")
    return table, dataset.features_matrix(table)


def check_baseline(args, features: np.ndarray) -> np.ndarray | None:
    """Check --baseline against the test rows and return a baseline file's rows, else None."""
    if args.baseline == "kmeans":
        clustered = min(len(features), attribution.KMEANS_MAX_ROWS)
        if args.num_clusters > clustered:
            raise StepError(
                f"--num-clusters {args.num_clusters} is more than the {clustered} test rows "
                "to cluster; lower it or pass --baseline mean or a baseline file"
            )
        return None
    if args.baseline == "mean":
        return None
    return read_baseline_file(args.baseline, features.shape[1])


def load_model(model_dir: str, num_features: int):
    """Load model.keras from the train step's archive and check its feature count."""
    from common.model_archive import extract_model_archive

    with tempfile.TemporaryDirectory(prefix="model-") as model_folder:
        model_path = extract_model_archive(model_dir, model_folder)
        import keras

        model = keras.saving.load_model(model_path)
    if model.input_shape[-1] != num_features:
        raise StepError(
            f"the test rows have {num_features} features but the model expects "
            f"{model.input_shape[-1]}"
        )
    return model


def group_chosen_queries(table, features: np.ndarray, chosen: np.ndarray):
    """Return the chosen queries, sorted by qid, each with its documents sorted by doc."""
    from common import ranking

    qids = table.column("qid").to_numpy()
    selected = np.isin(qids, chosen)
    return ranking.group_queries(
        qids[selected],
        table.column("doc").to_numpy()[selected],
        table.column("label").to_numpy()[selected],
        features[selected],
    )


def warn_about_few_samples(num_samples: int | None, explained: list[int], num_features: int):
    players = len(explained) + (1 if len(explained) < num_features else 0)
    if num_samples is not None and num_samples < 2 * players:
        log.warning(
            "--num-samples %d is less than twice the %d players (features explained, plus "
            "one for the others); the SHAP values will be noisy, and below %d the "
            "regression is underdetermined",
            num_samples,
            players,
            players,
        )


def partial_dependence_of_top_features(args, scorer, rows, names, explained, global_values):
    """Return Clarify's pdp list for the explained features with the largest |global value|."""
    order = sorted(range(len(explained)), key=lambda k: (-abs(global_values[k]), explained[k]))
    return [
        attribution.partial_dependence(
            scorer, rows, explained[k], names[explained[k]], args.pdp_grid_resolution
        )
        for k in order[: args.pdp_top_k_features]
    ]


def write_outputs(
    args, analysis, explained_names, explained, rows, queries, explanation, normalization
):
    """Write analysis.json, the local values when asked for, and report.html."""
    import html_report

    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "analysis.json"), "w", encoding="utf-8") as file:
        json.dump(analysis, file, indent=2)
    if args.save_local_shap_values:
        write_local_values(args.output_dir, explained_names, queries, explanation)
    page = html_report.render(
        analysis=analysis,
        feature_names=explained_names,
        explained=explained,
        rows=rows,
        queries=queries,
        explanation=explanation,
        normalization=normalization,
        seed=args.seed,
    )
    with open(os.path.join(args.output_dir, "report.html"), "w", encoding="utf-8") as file:
        file.write(page)


def describe_explainer(args, baseline, explanation, explained_names, queries) -> dict:
    """Return the explainer section of analysis.json: the method and its settings."""
    import shap

    return {
        "name": attribution.EXPLAINER_NAME,
        "shap_version": shap.__version__,
        "reason": attribution.EXPLAINER_REASON,
        "model_output": "the score of one document, computed from its feature vector alone",
        "baseline": {**baseline.description, "rows": len(baseline.rows)},
        "num_samples": explanation.num_samples,
        "players": explanation.players,
        "exact": explanation.exact,
        "agg_method": args.agg_method,
        "seed": args.seed,
        "features_to_explain": explained_names,
        "other_features_grouped": explanation.other_features is not None,
        "queries": len(queries),
        "rows": len(explanation.scores),
        "rows_scored_for_shap": explanation.rows_scored,
    }


def write_local_values(output_dir, explained_names, queries, explanation) -> None:
    """Write explanations_shap/out.csv (SHAP values) and rows.csv (qid, doc, label, score)."""
    folder = os.path.join(output_dir, "explanations_shap")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "out.csv"), "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(explained_names)
        writer.writerows(explanation.values.tolist())

    header = ["qid", "doc", "label", "score"]
    if explanation.other_features is not None:
        header.append("other_features")
    with open(os.path.join(folder, "rows.csv"), "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        row = 0
        for query in queries:
            for doc, label in zip(query.docs, query.labels, strict=True):
                line = [query.qid, int(doc), int(label), float(explanation.scores[row])]
                if explanation.other_features is not None:
                    line.append(float(explanation.other_features[row]))
                writer.writerow(line)
                row += 1


if __name__ == "__main__":
    contract.run_step(main)

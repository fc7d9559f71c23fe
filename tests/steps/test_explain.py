"""The explain step on a model that train.py fits to the fixture queries.

The splits are written here with pyarrow instead of by the prepare step, which needs a
Spark session, so the module takes seconds. Kernel SHAP runs with few samples: the checks
hold for any sample count.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import math
import re
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common import letor
from tests.steps.steprunner import FIXTURE_FEATURES, FIXTURES, STEPS, describe, run_step

# Names in place of prepare's f1..f12, so that the tests see where names come from.
FEATURE_NAMES = [
    "bm25",
    "tf_idf",
    "pagerank",
    "clicks",
    "url_length",
    "sparse_flag",
    "title_match",
    "freshness",
    "constant",
    "anchor_text",
    "dwell_time",
    "spam_score",
]
TEST_QUERIES = 6
VALIDATION_QUERIES = 6
# Arguments of the main explain run.
MAX_QUERIES = 3
GRID_RESOLUTION = 5
TOP_K = 3
# Scores are float32, so a sum of SHAP values matches them to about 1e-6; the margin is wide.
ADDITIVITY_TOLERANCE = 1e-4

EXPLAIN_DIR = STEPS / "explain"
if str(EXPLAIN_DIR) not in sys.path:
    sys.path.insert(0, str(EXPLAIN_DIR))

import attribution  # noqa: E402


def load_explain_module():
    spec = importlib.util.spec_from_file_location("explain_step", EXPLAIN_DIR / "explain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_split(path: Path, rows: list[tuple[int, int, int, np.ndarray]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    features = np.stack([row[3] for row in rows])
    table = pa.table(
        {
            "qid": pa.array([row[0] for row in rows], pa.int64()),
            "doc": pa.array([row[1] for row in rows], pa.int64()),
            "label": pa.array([row[2] for row in rows], pa.int32()),
            "features": pa.ListArray.from_arrays(
                pa.array(np.arange(0, features.size + 1, features.shape[1]), pa.int32()),
                pa.array(features.ravel(), pa.float64()),
            ),
        }
    )
    pq.write_table(table, path)


def write_splits(root: Path) -> dict:
    """Split the fixture queries by qid, standardize with train statistics, write schema.json.

    The last queries are the test split and the ones before them validation, as prepare
    would split by query. Returns the test rows by split name for the checks.
    """
    parsed = []
    for path in sorted((FIXTURES / "letor").iterdir()):
        parsed += [line for _, line in letor.parse_file(str(path), FIXTURE_FEATURES, 4)]
    docs_seen: dict[int, int] = {}
    rows = []
    for line in parsed:
        doc = docs_seen.get(line.qid, 0)
        docs_seen[line.qid] = doc + 1
        rows.append((line.qid, doc, line.label, np.array(line.features, dtype=np.float64)))

    qids = sorted(docs_seen)
    test = set(qids[-TEST_QUERIES:])
    validation = set(qids[-TEST_QUERIES - VALIDATION_QUERIES : -TEST_QUERIES])
    splits = {
        "train": [row for row in rows if row[0] not in test | validation],
        "validation": [row for row in rows if row[0] in validation],
        "test": [row for row in rows if row[0] in test],
    }
    train_features = np.stack([row[3] for row in splits["train"]])
    mean = train_features.mean(axis=0)
    std = train_features.std(axis=0)
    std[std == 0] = 1.0
    for name, split_rows in splits.items():
        standardized = [(q, d, label, (x - mean) / std) for q, d, label, x in split_rows]
        splits[name] = standardized
        write_split(root / name / f"{name}-00000.parquet", standardized)

    (root / "schema").mkdir()
    schema = {
        "num_features": FIXTURE_FEATURES,
        "feature_names": FEATURE_NAMES,
        "normalization": {"method": "standardize", "mean": mean.tolist(), "std": std.tolist()},
    }
    (root / "schema" / "schema.json").write_text(json.dumps(schema))
    return splits


def train_model(root: Path, prepared: Path) -> Path:
    """Fit the model with train.py and tar it into model.tar.gz, as SageMaker does."""
    result = run_step(
        "train/train.py",
        ["--epochs", "6", "--batch_size", "4", "--learning_rate", "0.01"]
        + ["--hidden_units", "16,8", "--dropout", "0", "--seed", "7"],
        root / "train" / "opt" / "ml",
        {
            "SM_CHANNEL_TRAIN": str(prepared / "train"),
            "SM_CHANNEL_VALIDATION": str(prepared / "validation"),
            "SM_MODEL_DIR": str(root / "train" / "model"),
            "SM_OUTPUT_DATA_DIR": str(root / "train" / "output"),
        },
    )
    assert result.returncode == 0, describe(result)
    archive_dir = root / "model"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "model.tar.gz", "w:gz") as archive:
        archive.add(root / "train" / "model" / "model.keras", arcname="model.keras")
    return archive_dir


def explain_arguments(setup, output_dir: Path, *extra) -> list:
    return [
        "--model-dir",
        setup.model_dir,
        "--input-dir",
        setup.prepared / "test",
        "--schema-dir",
        setup.prepared / "schema",
        "--output-dir",
        output_dir,
        *extra,
    ]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    prepared = root / "prepared"
    splits = write_splits(prepared)
    model_dir = train_model(root, prepared)
    return SimpleNamespace(root=root, prepared=prepared, splits=splits, model_dir=model_dir)


@pytest.fixture(scope="module")
def explained(setup):
    """Run the step once with few samples and partial dependence for the top 3 features."""
    output_dir = setup.root / "explain-output"
    arguments = explain_arguments(
        setup,
        output_dir,
        "--num-samples",
        "100",
        "--num-clusters",
        "5",
        "--max-queries",
        str(MAX_QUERIES),
        "--pdp-grid-resolution",
        str(GRID_RESOLUTION),
        "--pdp-top-k-features",
        str(TOP_K),
        "--seed",
        "3",
    )
    result = run_step("explain/explain.py", arguments, setup.root / "explain" / "opt" / "ml")
    assert result.returncode == 0, describe(result)
    return SimpleNamespace(
        output_dir=output_dir,
        analysis=json.loads((output_dir / "analysis.json").read_text()),
        local=read_csv(output_dir / "explanations_shap" / "out.csv"),
        rows=read_csv(output_dir / "explanations_shap" / "rows.csv"),
    )


@pytest.fixture(scope="module")
def model(setup):
    import keras

    return keras.saving.load_model(setup.root / "train" / "model" / "model.keras")


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as file:
        lines = list(csv.reader(file))
    return lines[0], lines[1:]


def model_scores(model, features: np.ndarray) -> np.ndarray:
    """Score rows as separate one-document queries, the model's own batch layout."""
    scores = model(np.asarray(features, dtype=np.float32)[:, np.newaxis, :], training=False)
    return np.asarray(scores, dtype=np.float64)[:, 0]


def test_local_values_add_up_to_model_scores(setup, explained, model):
    header, values = explained.local
    _, rows = explained.rows
    local = np.array(values, dtype=np.float64)
    expected_value = explained.analysis["explanations"]["kernel_shap"]["score"]["expected_value"]

    test_rows = {(q, d): x for q, d, _, x in setup.splits["test"]}
    features = np.stack([test_rows[(int(row[0]), int(row[1]))] for row in rows])
    scores = model_scores(model, features)

    assert header == FEATURE_NAMES
    np.testing.assert_allclose(
        local.sum(axis=1) + expected_value, scores, atol=ADDITIVITY_TOLERANCE
    )
    np.testing.assert_allclose([float(row[3]) for row in rows], scores, atol=ADDITIVITY_TOLERANCE)


def test_analysis_json_matches_clarify_layout(explained):
    analysis = explained.analysis
    assert analysis["version"] == "1.0"
    assert set(analysis["explanations"]) == {"kernel_shap", "pdp"}
    assert list(analysis["explanations"]["kernel_shap"]) == ["score"]

    result = analysis["explanations"]["kernel_shap"]["score"]
    assert set(result) == {"global_shap_values", "expected_value"}
    assert list(result["global_shap_values"]) == FEATURE_NAMES
    assert all(isinstance(v, float) for v in result["global_shap_values"].values())
    assert isinstance(result["expected_value"], float)

    # Clarify's pdp entry for a numerical feature, one prediction list per model output.
    pdp = analysis["explanations"]["pdp"]
    assert len(pdp) == TOP_K
    for entry in pdp:
        assert set(entry) == {
            "feature_name",
            "data_type",
            "feature_values",
            "model_predictions",
            "data_distribution",
        }
        assert entry["data_type"] == "numerical"
        assert entry["feature_name"] in FEATURE_NAMES
        assert len(entry["feature_values"]) == GRID_RESOLUTION
        assert entry["feature_values"] == sorted(entry["feature_values"])
        assert len(entry["model_predictions"]) == 1
        assert len(entry["model_predictions"][0]) == GRID_RESOLUTION
        assert len(entry["data_distribution"]) == GRID_RESOLUTION
        assert sum(entry["data_distribution"]) == pytest.approx(1.0)


def test_pdp_covers_top_global_features(explained):
    global_values = explained.analysis["explanations"]["kernel_shap"]["score"]["global_shap_values"]
    top = sorted(global_values, key=lambda name: -abs(global_values[name]))[:TOP_K]
    assert [entry["feature_name"] for entry in explained.analysis["explanations"]["pdp"]] == top


def test_analysis_records_explainer(setup, explained):
    explainer = explained.analysis["explainer"]
    assert explainer["name"] == "shap.KernelExplainer"
    assert "Clarify" in explainer["reason"]
    assert explainer["num_samples"] == 100
    assert explainer["exact"] is False
    assert explainer["baseline"] == {
        "method": "kmeans",
        "num_clusters": 5,
        "clustered_rows": len(setup.splits["test"]),
        "rows": 5,
    }
    assert explainer["queries"] == MAX_QUERIES
    assert explainer["rows"] == len(explained.rows[1])


def test_out_csv_rows_match_documents(setup, explained):
    header, values = explained.local
    rows_header, rows = explained.rows
    assert rows_header == ["qid", "doc", "label", "score"]
    assert len(values) == len(rows)
    assert all(len(row) == len(FEATURE_NAMES) for row in values)

    explained_qids = sorted({int(row[0]) for row in rows})
    test_qids = {q for q, _, _, _ in setup.splits["test"]}
    assert len(explained_qids) == MAX_QUERIES
    assert set(explained_qids) <= test_qids
    expected = sorted((q, d) for q, d, _, _ in setup.splits["test"] if q in explained_qids)
    assert [(int(row[0]), int(row[1])) for row in rows] == expected


def test_global_values_aggregate_out_csv(explained):
    _, values = explained.local
    local = np.array(values, dtype=np.float64)
    global_values = explained.analysis["explanations"]["kernel_shap"]["score"]["global_shap_values"]
    np.testing.assert_allclose(
        [global_values[name] for name in FEATURE_NAMES], np.mean(np.abs(local), axis=0)
    )
    # The fixtures' feature 9 is the same in every row, so it never changes a score.
    assert global_values["constant"] == 0.0


# Each column by hand: |values| means 9/3 and 6/3, medians 1 and 0, squares 35/3 and 20/3.
AGGREGATION_INPUT = np.array([[1.0, -2.0], [-3.0, 4.0], [5.0, 0.0]])


@pytest.mark.parametrize(
    ("method", "expected"),
    [("mean_abs", [3.0, 2.0]), ("median", [1.0, 0.0]), ("mean_sq", [35 / 3, 20 / 3])],
)
def test_aggregation_hand_checked(method, expected):
    np.testing.assert_allclose(
        attribution.aggregate_shap_values(AGGREGATION_INPUT, method), expected
    )


def test_median_keeps_sign():
    values = np.array([[-1.0], [-2.0], [-3.0]])
    assert attribution.aggregate_shap_values(values, "median")[0] == -2.0


def test_aggregation_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown agg_method 'max'"):
        attribution.aggregate_shap_values(AGGREGATION_INPUT, "max")


def shapley_by_enumeration(score, x: np.ndarray, baseline: np.ndarray, players: list[list[int]]):
    """Return exact Shapley values of `players` (groups of columns) against one baseline row."""
    count = len(players)
    values = np.zeros(count)
    for player in range(count):
        others = [p for p in range(count) if p != player]
        for size in range(count):
            weight = math.factorial(size) * math.factorial(count - size - 1) / math.factorial(count)
            for coalition in itertools.combinations(others, size):
                without = baseline.copy()
                for member in coalition:
                    without[players[member]] = x[players[member]]
                with_player = without.copy()
                with_player[players[player]] = x[players[player]]
                values[player] += weight * (score(with_player)[0] - score(without)[0])
    return values


def test_kernel_shap_exact_for_feature_subset(setup, model):
    features = np.stack([x for _, _, _, x in setup.splits["test"]])
    rows = features[:4]
    scorer = attribution.DocumentScorer(model)
    baseline = attribution.mean_baseline(features)
    explained = [0, 2]

    explanation = attribution.explain_rows(scorer, rows, baseline, explained, None, seed=1)

    # Three players (bm25, pagerank, the rest), so the default samples cover all coalitions.
    assert explanation.exact
    others = [index for index in range(FIXTURE_FEATURES) if index not in explained]
    for row in range(len(rows)):
        expected = shapley_by_enumeration(scorer, rows[row], baseline.rows[0], [[0], [2], others])
        np.testing.assert_allclose(explanation.values[row], expected[:2], atol=1e-5)
        assert explanation.other_features[row] == pytest.approx(expected[2], abs=1e-5)
    total = explanation.values.sum(axis=1) + explanation.other_features
    np.testing.assert_allclose(
        total + explanation.expected_value, model_scores(model, rows), atol=ADDITIVITY_TOLERANCE
    )


def test_kernel_shap_repeats_with_seed(setup, model):
    features = np.stack([x for _, _, _, x in setup.splits["test"]])
    scorer = attribution.DocumentScorer(model)
    baseline = attribution.kmeans_baseline(features, 4, seed=0)
    runs = [
        attribution.explain_rows(scorer, features[:3], baseline, list(range(12)), 50, seed=9)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].values, runs[1].values)


def test_scorer_matches_query_batches(setup, model):
    from common import ranking

    test = setup.splits["test"]
    queries = ranking.group_queries(
        [row[0] for row in test],
        [row[1] for row in test],
        [row[2] for row in test],
        np.stack([row[3] for row in test]),
    )
    scorer = attribution.DocumentScorer(model)
    assert attribution.max_score_difference(model, scorer, queries) < 1e-5


def test_baseline_file_sets_expected_value(setup, model):
    features = np.stack([x for _, _, _, x in setup.splits["test"]])
    baseline_rows = np.stack([features.mean(axis=0), np.zeros(FIXTURE_FEATURES)])
    baseline_path = setup.root / "baseline.csv"
    np.savetxt(baseline_path, baseline_rows, delimiter=",")
    output_dir = setup.root / "explain-baseline-file"
    arguments = explain_arguments(
        setup,
        output_dir,
        "--baseline",
        baseline_path,
        "--features-to-explain",
        "bm25,2",
        "--agg-method",
        "median",
        "--save-local-shap-values",
        "false",
        "--pdp-top-k-features",
        "0",
        "--max-queries",
        "1",
    )

    result = run_step("explain/explain.py", arguments, setup.root / "explain-2" / "opt" / "ml")

    assert result.returncode == 0, describe(result)
    analysis = json.loads((output_dir / "analysis.json").read_text())
    result_section = analysis["explanations"]["kernel_shap"]["score"]
    expected_value = float(np.mean(model_scores(model, baseline_rows)))
    assert result_section["expected_value"] == pytest.approx(expected_value, abs=1e-5)
    assert list(result_section["global_shap_values"]) == ["bm25", "pagerank"]
    assert analysis["explanations"]["pdp"] == []
    assert analysis["explainer"]["baseline"] == {
        "method": "file",
        "path": str(baseline_path),
        "rows": 2,
    }
    assert analysis["explainer"]["other_features_grouped"] is True
    assert not (output_dir / "explanations_shap").exists()
    assert (output_dir / "report.html").is_file()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--num-samples", "0"], "--num-samples must be at least 1, got 0"),
        (["--agg-method", "max"], "argument --agg-method: invalid choice: 'max'"),
        (
            ["--features-to-explain", "bm25,ranking_signal"],
            "unknown feature 'ranking_signal'; expected a zero-based index or one of the names "
            "bm25, tf_idf, pagerank",
        ),
        (["--features-to-explain", "12"], "index 12 is out of range"),
        (["--features-to-explain", "bm25,0"], "lists feature 'bm25' (index 0) twice"),
        (
            ["--save-local-shap-values", "maybe"],
            "argument --save-local-shap-values: expected true or false, got 'maybe'",
        ),
        (["--baseline", "no-such-baseline.csv"], "is neither kmeans, mean nor an existing file"),
        (["--num-clusters", "500"], "--num-clusters 500 is more than the"),
        (["--max-queries", "0"], "--max-queries must be at least 1, got 0"),
        (["--pdp-grid-resolution", "1"], "--pdp-grid-resolution must be at least 2, got 1"),
    ],
)
def test_bad_settings_fail_before_computing(setup, tmp_path, arguments, message):
    base_dir = tmp_path / "opt" / "ml"
    output_dir = tmp_path / "out"

    result = run_step(
        "explain/explain.py", explain_arguments(setup, output_dir, *arguments), base_dir
    )

    assert result.returncode == 1, describe(result)
    assert message in (base_dir / "output" / "message").read_text()
    assert "Traceback" not in result.stderr
    # The step logs "explaining N of M test queries" just before it imports TensorFlow.
    assert "explaining" not in result.stderr
    assert not output_dir.exists()


def test_baseline_file_of_wrong_width_fails(setup, tmp_path):
    baseline_path = tmp_path / "baseline.csv"
    baseline_path.write_text("1,2,3\n")
    base_dir = tmp_path / "opt" / "ml"

    result = run_step(
        "explain/explain.py",
        explain_arguments(setup, tmp_path / "out", "--baseline", baseline_path),
        base_dir,
    )

    assert result.returncode == 1, describe(result)
    assert (base_dir / "output" / "message").read_text() == (
        f"the baseline {baseline_path} has rows of 3 values but the model takes 12 features"
    )


def test_resolve_features_by_name_and_index():
    explain = load_explain_module()
    assert explain.resolve_features_to_explain(None, FEATURE_NAMES) == list(range(12))
    assert explain.resolve_features_to_explain("pagerank, 0,11", FEATURE_NAMES) == [2, 0, 11]


def test_report_plots_without_external_references(explained):
    page = (explained.output_dir / "report.html").read_text()
    for title in ("Global feature importance", "Summary plot", "Partial dependence"):
        assert f"<h2>{title}</h2>" in page
    assert "<h2>Per-query view</h2>" in page
    assert page.count('aria-label="global importance"') == 1
    assert page.count('aria-label="summary plot"') == 1
    assert page.count('aria-label="partial dependence"') == TOP_K
    assert page.count("<circle") > len(explained.rows[1])
    for name in FEATURE_NAMES:
        assert f">{name}<" in page
    assert "before standardization" in page
    # Nothing may load from another file or host.
    assert not re.search(r"https?://|<script|<link|<img|<iframe|src=|@import|url\(", page)

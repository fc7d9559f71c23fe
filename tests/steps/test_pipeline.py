"""Each step script run as a SageMaker job would run it, chained on the fixtures.

prepare -> train -> predict (two instances, one test shard each) -> evaluate -> package,
every step a subprocess with SAGEMAKER_BASE_DIR pointing at its own opt/ml folder.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.steps.steprunner import FIXTURE_FEATURES, FIXTURES, STEPS, describe, run_step

TRAIN_ARGUMENTS = [
    "--epochs",
    "12",
    "--batch_size",
    "4",
    "--learning_rate",
    "0.01",
    "--hidden_units",
    "16,8",
    "--dropout",
    "0.1",
    "--loss",
    "softmax",
    "--seed",
    "7",
]
METRICS_LINE = re.compile(
    r"^epoch=(\d+) train:loss=([0-9.eE+-]+) validation:ndcg@10=([0-9.eE+-]+) "
    r"validation:best_ndcg@10=([0-9.eE+-]+)$"
)


def training_env(root: Path, prepared: Path, name: str) -> dict:
    return {
        "SM_CHANNEL_TRAIN": str(prepared / "train"),
        "SM_CHANNEL_VALIDATION": str(prepared / "validation"),
        "SM_MODEL_DIR": str(root / name / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / name / "output" / "data"),
    }


def write_model_archive(model_dir: Path, archive_dir: Path) -> None:
    """Tar SM_MODEL_DIR into model.tar.gz, as SageMaker does after a training job."""
    archive_dir.mkdir(parents=True)
    with tarfile.open(archive_dir / "model.tar.gz", "w:gz") as archive:
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    prepared = root / "prepare" / "output"
    results = {}

    results["prepare"] = run_step(
        "prepare/prepare.py",
        [
            "--input-dir",
            FIXTURES / "letor",
            "--output-dir",
            prepared,
            "--validation-fraction",
            "0.2",
            "--test-fraction",
            "0.2",
            "--seed",
            "42",
            "--num-features",
            FIXTURE_FEATURES,
            "--max-label",
            "4",
            "--test-shards",
            "2",
        ],
        root / "prepare" / "opt" / "ml",
    )
    assert results["prepare"].returncode == 0, describe(results["prepare"])

    results["train"] = run_step(
        "train/train.py",
        TRAIN_ARGUMENTS,
        root / "train" / "opt" / "ml",
        training_env(root, prepared, "train"),
    )
    assert results["train"].returncode == 0, describe(results["train"])
    write_model_archive(root / "train" / "model", root / "model")

    predictions = root / "predictions"
    shards = sorted((prepared / "test").glob("*.parquet"))
    for index, shard in enumerate(shards, start=1):
        # Each instance gets its own test folder and resource config, as ShardedByS3Key does.
        base_dir = root / f"predict-{index}" / "opt" / "ml"
        (base_dir / "config").mkdir(parents=True)
        (base_dir / "config" / "resourceconfig.json").write_text(
            json.dumps({"current_host": f"algo-{index}", "hosts": ["algo-1", "algo-2"]})
        )
        test_dir = root / f"predict-{index}" / "test"
        test_dir.mkdir()
        (test_dir / shard.name).write_bytes(shard.read_bytes())
        results[f"predict-{index}"] = run_step(
            "predict/predict.py",
            ["--model-dir", root / "model", "--input-dir", test_dir, "--output-dir", predictions],
            base_dir,
        )
        assert results[f"predict-{index}"].returncode == 0, describe(results[f"predict-{index}"])

    results["evaluate"] = run_step(
        "evaluate/evaluate.py",
        [
            "--predictions-dir",
            predictions,
            "--validation-dir",
            prepared / "validation",
            "--schema-dir",
            prepared / "schema",
            "--output-dir",
            root / "evaluation",
            "--seed",
            "42",
            "--relevance-threshold",
            "1",
        ],
        root / "evaluate" / "opt" / "ml",
    )
    assert results["evaluate"].returncode == 0, describe(results["evaluate"])

    results["package"] = run_step(
        "package/package.py",
        [
            "--model-dir",
            root / "model",
            "--schema-dir",
            prepared / "schema",
            "--output-dir",
            root / "package",
            "--model-version",
            "1",
        ],
        root / "package" / "opt" / "ml",
    )
    assert results["package"].returncode == 0, describe(results["package"])
    return SimpleNamespace(root=root, prepared=prepared, predictions=predictions, results=results)


def read_split(folder: Path):
    return pq.read_table(sorted(folder.glob("*.parquet"))).to_pandas()


def test_prepare_writes_parquet_splits(chain):
    for split in ("train", "validation", "test"):
        files = sorted(p.name for p in (chain.prepared / split).iterdir())
        assert files and all(name.endswith(".parquet") for name in files), (split, files)
        schema = pq.read_schema(chain.prepared / split / files[0])
        assert str(schema.field("qid").type) == "int64"
        assert str(schema.field("doc").type) == "int64"
        assert str(schema.field("label").type) == "int32"
        assert str(schema.field("features").type) == "list<element: double>"


def test_prepare_splits_by_query(chain):
    qids = {
        split: set(read_split(chain.prepared / split).qid)
        for split in ("train", "validation", "test")
    }
    assert qids["train"].isdisjoint(qids["validation"])
    assert qids["train"].isdisjoint(qids["test"])
    assert qids["validation"].isdisjoint(qids["test"])
    assert set.union(*qids.values()) == set(range(101, 131))
    assert (len(qids["validation"]), len(qids["test"])) == (6, 6)


def test_prepare_test_shards_hold_whole_queries(chain):
    shards = sorted((chain.prepared / "test").glob("*.parquet"))
    assert [shard.name for shard in shards] == ["test-00000.parquet", "test-00001.parquet"]
    shard_qids = [set(pq.read_table(shard).column("qid").to_pylist()) for shard in shards]
    assert shard_qids[0].isdisjoint(shard_qids[1])
    assert all(shard_qids)


def test_prepare_normalizes_with_train_statistics(chain):
    train = np.stack(read_split(chain.prepared / "train").features)
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-9)
    schema = json.loads((chain.prepared / "schema" / "schema.json").read_text())
    # Feature 9 is constant, so its standard deviation is replaced by 1.
    assert schema["normalization"]["std"][8] == 1.0
    non_constant = [index for index in range(FIXTURE_FEATURES) if index != 8]
    np.testing.assert_allclose(train.std(axis=0)[non_constant], 1.0, atol=1e-9)


def test_prepare_doc_is_position_in_query(chain):
    frames = [read_split(chain.prepared / split) for split in ("train", "validation", "test")]
    query_101 = next(frame for frame in frames if 101 in set(frame.qid))
    docs = sorted(query_101[query_101.qid == 101].doc)
    # Query 101 is the first in part-1.txt: count its lines to know its documents.
    lines = (FIXTURES / "letor" / "part-1.txt").read_text().splitlines()
    assert docs == list(range(sum(" qid:101 " in line for line in lines)))


def test_prepare_writes_schema_and_statistics(chain):
    schema = json.loads((chain.prepared / "schema" / "schema.json").read_text())
    assert schema["num_features"] == FIXTURE_FEATURES
    assert schema["feature_names"][:2] == ["f1", "f2"]
    assert schema["label_range"] == [0, 4]
    fixture_rows = sum(
        len(path.read_text().splitlines()) for path in (FIXTURES / "letor").iterdir()
    )
    assert sum(split["rows"] for split in schema["splits"].values()) == fixture_rows
    statistics = json.loads((chain.prepared / "schema" / "statistics.json").read_text())
    train = statistics["splits"]["train"]
    assert sum(train["label_distribution"].values()) == train["rows"]
    assert len(train["features"]["mean"]) == FIXTURE_FEATURES
    # Feature 4 is drawn from [0, 200] and reported before normalisation.
    assert train["features"]["min"][3] >= 0
    assert train["features"]["max"][3] <= 200


def test_train_prints_one_metrics_line_per_epoch(chain):
    lines = chain.results["train"].stdout.splitlines()
    matches = [METRICS_LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [int(match.group(1)) for match in matches] == list(range(1, 13))
    # The best value so far is the running maximum of the epoch values.
    values = [float(match.group(3)) for match in matches]
    best = [float(match.group(4)) for match in matches]
    assert best == [max(values[: epoch + 1]) for epoch in range(len(values))]


def test_train_writes_model_and_summary(chain):
    model_dir = chain.root / "train" / "model"
    assert (model_dir / "model.keras").is_file()
    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert summary["num_features"] == FIXTURE_FEATURES
    assert summary["hyperparameters"]["hidden_units"] == [16, 8]
    assert summary["hyperparameters"]["loss"] == "softmax"
    history = json.loads((chain.root / "train" / "output" / "data" / "history.json").read_text())
    assert len(history) == 12
    best = max(history, key=lambda epoch: epoch["validation:ndcg@10"])
    assert summary["metrics"]["validation:ndcg@10"] == best["validation:ndcg@10"]


def test_train_is_deterministic(chain):
    again = run_step(
        "train/train.py",
        TRAIN_ARGUMENTS,
        chain.root / "train-again" / "opt" / "ml",
        training_env(chain.root, chain.prepared, "train-again"),
    )
    assert again.returncode == 0, describe(again)
    assert again.stdout == chain.results["train"].stdout


@pytest.mark.parametrize("loss", ["softmax", "pairwise_logistic"])
def test_steps_per_execution_keeps_history(chain, loss):
    """Several steps per call train exactly as one step per call: same losses and metrics."""
    runs = {}
    for steps in (1, 3):
        name = f"train-{loss}-{steps}"
        # 4 epochs (the last --epochs wins) keep the four runs short.
        arguments = [
            *TRAIN_ARGUMENTS,
            "--epochs",
            4,
            "--loss",
            loss,
            "--steps_per_execution",
            steps,
        ]
        result = run_step(
            "train/train.py",
            arguments,
            chain.root / name / "opt" / "ml",
            training_env(chain.root, chain.prepared, name),
        )
        assert result.returncode == 0, describe(result)
        runs[steps] = result
    assert runs[3].stdout == runs[1].stdout
    assert len(runs[1].stdout.splitlines()) == 4


def test_predict_writes_one_file_per_instance(chain):
    files = sorted(path.name for path in chain.predictions.iterdir())
    assert files == ["predictions-algo-1.parquet", "predictions-algo-2.parquet"]
    tables = [pq.read_table(chain.predictions / name) for name in files]
    assert tables[0].column_names == ["qid", "doc", "label", "score", "features"]
    qids = [set(table.column("qid").to_pylist()) for table in tables]
    assert qids[0].isdisjoint(qids[1])
    assert qids[0] | qids[1] == set(read_split(chain.prepared / "test").qid)


def test_predict_passes_test_rows_through(chain):
    test = read_split(chain.prepared / "test").sort_values(["qid", "doc"]).reset_index(drop=True)
    predictions = pq.read_table(sorted(chain.predictions.glob("*.parquet"))).to_pandas()
    predictions = predictions.sort_values(["qid", "doc"]).reset_index(drop=True)
    assert predictions.label.tolist() == test.label.tolist()
    np.testing.assert_array_equal(np.stack(predictions.features), np.stack(test.features))
    assert np.all(np.isfinite(predictions.score))


def test_evaluate_writes_evaluation_json(chain):
    evaluation = json.loads((chain.root / "evaluation" / "evaluation.json").read_text())
    names = ["ndcg_at_1", "ndcg_at_5", "ndcg_at_10", "mrr", "map"]
    assert sorted(evaluation["ranking_metrics"]) == sorted(names)
    for name in names:
        assert set(evaluation["ranking_metrics"][name]) == {"value", "standard_deviation"}
        assert 0 <= evaluation["ranking_metrics"][name]["value"] <= 1
        assert name in evaluation["baselines"]["random"]
        assert name in evaluation["baselines"]["best_single_feature"]
    assert re.fullmatch(r"f\d+", evaluation["baselines"]["best_single_feature"]["feature"])
    assert evaluation["queries"] == 6
    assert evaluation["relevance_threshold"] == 1


def test_model_beats_random_baseline(chain):
    evaluation = json.loads((chain.root / "evaluation" / "evaluation.json").read_text())
    model = evaluation["ranking_metrics"]["ndcg_at_10"]["value"]
    random_order = evaluation["baselines"]["random"]["ndcg_at_10"]["value"]
    assert model > random_order


def test_evaluate_writes_per_query_csv(chain):
    lines = (chain.root / "evaluation" / "per_query.csv").read_text().splitlines()
    assert lines[0].split(",") == [
        "qid",
        "documents",
        "relevant_documents",
        "ndcg_at_1",
        "ndcg_at_5",
        "ndcg_at_10",
        "mrr",
        "map",
        "random_ndcg_at_10",
        "best_single_feature_ndcg_at_10",
    ]
    assert len(lines) == 1 + 6


def test_evaluate_summary_matches_per_query_rows(chain):
    evaluation = json.loads((chain.root / "evaluation" / "evaluation.json").read_text())
    per_query = pd.read_csv(chain.root / "evaluation" / "per_query.csv")
    for name in ["ndcg_at_1", "ndcg_at_5", "ndcg_at_10", "mrr", "map"]:
        entry = evaluation["ranking_metrics"][name]
        assert entry["value"] == pytest.approx(per_query[name].mean(), abs=1e-6)
        assert entry["standard_deviation"] == pytest.approx(per_query[name].std(ddof=0), abs=1e-6)
    random_baseline = evaluation["baselines"]["random"]["ndcg_at_10"]["value"]
    assert random_baseline == pytest.approx(per_query["random_ndcg_at_10"].mean(), abs=1e-6)


def run_evaluate_on(chain, predictions: pd.DataFrame, name: str):
    folder = chain.root / name / "predictions"
    folder.mkdir(parents=True)
    # The schema of predict's files, which an empty frame cannot carry by itself.
    schema = pq.read_schema(sorted(chain.predictions.glob("*.parquet"))[0])
    table = pa.Table.from_pandas(predictions, schema=schema, preserve_index=False)
    pq.write_table(table, folder / "predictions-algo-1.parquet")
    return run_step(
        "evaluate/evaluate.py",
        [
            "--predictions-dir",
            folder,
            "--validation-dir",
            chain.prepared / "validation",
            "--output-dir",
            chain.root / name / "evaluation",
        ],
        chain.root / name / "opt" / "ml",
    )


def good_predictions(chain) -> pd.DataFrame:
    return pq.read_table(sorted(chain.predictions.glob("*.parquet"))).to_pandas()


def test_evaluate_rejects_a_nan_score(chain):
    predictions = good_predictions(chain)
    predictions.loc[3, "score"] = float("nan")
    result = run_evaluate_on(chain, predictions, "nan-score")
    assert result.returncode != 0
    assert "1 predictions have a missing, NaN or infinite score" in result.stderr
    assert not (chain.root / "nan-score" / "evaluation" / "evaluation.json").exists()


def test_evaluate_rejects_a_document_scored_twice(chain):
    predictions = good_predictions(chain)
    repeated = pd.concat([predictions, predictions.iloc[[0]]], ignore_index=True)
    result = run_evaluate_on(chain, repeated, "scored-twice")
    assert result.returncode != 0
    first = predictions.iloc[0]
    assert "1 prediction rows repeat a document" in result.stderr
    assert f"qid {first.qid} doc {first.doc}" in result.stderr


def test_evaluate_rejects_empty_predictions(chain):
    result = run_evaluate_on(chain, good_predictions(chain).iloc[0:0], "no-rows")
    assert result.returncode != 0
    assert "contain no rows" in result.stderr


def test_package_archive_layout(chain):
    with tarfile.open(chain.root / "package" / "model.tar.gz") as archive:
        names = set(archive.getnames())
    assert {"1/saved_model.pb", "code/inference.py", "code/schema.json"} <= names
    assert any(name.startswith("1/variables/") for name in names)


@pytest.fixture(scope="module")
def unpacked_package(chain):
    folder = chain.root / "package-unpacked"
    with tarfile.open(chain.root / "package" / "model.tar.gz") as archive:
        archive.extractall(folder, filter="data")
    return folder


def test_package_signature_scores_raw_features(chain, unpacked_package):
    import keras
    import tensorflow as tf

    schema = json.loads((unpacked_package / "code" / "schema.json").read_text())
    mean = np.array(schema["normalization"]["mean"])
    std = np.array(schema["normalization"]["std"])
    test = read_split(chain.prepared / "test")
    normalized = np.stack(test.features)[:10]
    raw = normalized * std + mean

    signature = tf.saved_model.load(str(unpacked_package / "1")).signatures["serving_default"]
    served = signature(features=tf.constant(raw, tf.float32))["scores"].numpy()
    model = keras.saving.load_model(chain.root / "train" / "model" / "model.keras")
    expected = np.asarray(model(normalized[np.newaxis].astype(np.float32), training=False))[0]
    np.testing.assert_allclose(served, expected, atol=1e-4)


def load_inference_module(folder: Path):
    spec = importlib.util.spec_from_file_location(
        "packaged_inference", folder / "code" / "inference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inference_handlers_round_trip(unpacked_package):
    import io

    inference = load_inference_module(unpacked_package)
    context = SimpleNamespace(
        request_content_type="application/json", accept_header="application/json"
    )
    body = json.dumps({"instances": [[0.5] * FIXTURE_FEATURES, [1] * FIXTURE_FEATURES]})
    request = inference.input_handler(io.BytesIO(body.encode()), context)
    assert json.loads(request) == {
        "instances": [[0.5] * FIXTURE_FEATURES, [1.0] * FIXTURE_FEATURES]
    }

    # The TensorFlow Serving container passes a requests.Response; these are its fields.
    response = SimpleNamespace(
        status_code=200, content=json.dumps({"predictions": [0.2, 0.9]}).encode()
    )
    output, content_type = inference.output_handler(response, context)
    assert json.loads(output) == {"scores": [0.2, 0.9], "ranking": [1, 0]}
    assert content_type == "application/json"


def test_inference_rejects_wrong_feature_count(unpacked_package):
    import io

    inference = load_inference_module(unpacked_package)
    context = SimpleNamespace(request_content_type="text/csv", accept_header="application/json")
    with pytest.raises(
        ValueError, match=f"document 1 must be a list of {FIXTURE_FEATURES} numbers, got 2"
    ):
        inference.input_handler(
            io.BytesIO(("1," * (FIXTURE_FEATURES - 1) + "1\n1,2\n").encode()), context
        )


def test_prepare_failure_writes_message(tmp_path):
    input_dir = tmp_path / "raw"
    input_dir.mkdir()
    (input_dir / "data.txt").write_bytes((FIXTURES / "bad" / "label_out_of_range.txt").read_bytes())
    base_dir = tmp_path / "opt" / "ml"
    result = run_step(
        "prepare/prepare.py",
        ["--input-dir", input_dir, "--output-dir", tmp_path / "out", "--num-features", "3"],
        base_dir,
    )
    assert result.returncode == 1, describe(result)
    message = (base_dir / "output" / "message").read_text()
    assert "data.txt: label outside [0, 4]" in message
    assert "line 2 (label 5), line 4 (label -1)" in message
    assert "Traceback" not in result.stderr


def test_train_rejects_unknown_loss(chain, tmp_path):
    base_dir = tmp_path / "opt" / "ml"
    result = run_step(
        "train/train.py",
        ["--loss", "hinge"],
        base_dir,
        training_env(tmp_path, chain.prepared, "train"),
    )
    assert result.returncode == 1, describe(result)
    assert (base_dir / "output" / "failure").read_text() == (
        "invalid loss 'hinge': expected one of softmax, pairwise_logistic"
    )


def test_predict_without_model_archive_fails(chain, tmp_path):
    base_dir = tmp_path / "opt" / "ml"
    result = run_step(
        "predict/predict.py",
        [
            "--model-dir",
            tmp_path / "no-model",
            "--input-dir",
            chain.prepared / "test",
            "--output-dir",
            tmp_path / "out",
        ],
        base_dir,
    )
    assert result.returncode == 1, describe(result)
    assert "model archive" in (base_dir / "output" / "message").read_text()
    assert "not found" in (base_dir / "output" / "message").read_text()


def test_steps_do_not_import_harness():
    for path in STEPS.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+harness\b", text, re.MULTILINE), path

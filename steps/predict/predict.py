"""Predict step (SageMaker Processing, TensorFlow): score the test queries with the model.

Each instance scores the test Parquet files it was given (with ShardedByS3Key, a share
of them) and writes `predictions-<current_host>.parquet` with the columns qid, doc,
label, score and features. The features pass through for evaluate's baselines.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import logging  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from common import contract  # noqa: E402
from common.contract import StepError  # noqa: E402

log = logging.getLogger("predict")


def parse_arguments(argv=None):
    parser = contract.ArgumentParser(prog="predict.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir",
        default="/opt/ml/processing/input/model",
        help="folder with model.tar.gz from the train step",
    )
    parser.add_argument(
        "--input-dir",
        default="/opt/ml/processing/input/test",
        help="folder with this instance's test Parquet files",
    )
    parser.add_argument(
        "--output-dir",
        default="/opt/ml/processing/output/predictions",
        help="folder that receives predictions-<current_host>.parquet",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="queries scored per batch")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise StepError(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def prediction_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("qid", pa.int64()),
            ("doc", pa.int64()),
            ("label", pa.int32()),
            ("score", pa.float64()),
            ("features", pa.list_(pa.float64())),
        ]
    )


def main():
    contract.configure_logging("predict")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    args = parse_arguments()
    started = time.monotonic()

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from common import dataset
    from common.model_archive import extract_model_archive

    host = contract.resource_config()["current_host"]
    output_path = os.path.join(args.output_dir, f"predictions-{host}.parquet")
    os.makedirs(args.output_dir, exist_ok=True)

    paths = dataset.list_parquet_files(args.input_dir)
    if not paths:
        # More instances than test files leaves some instances without input.
        log.warning("no Parquet files in %s; writing an empty %s", args.input_dir, output_path)
        pq.write_table(prediction_schema().empty_table(), output_path)
        return

    with tempfile.TemporaryDirectory(prefix="model-") as model_folder:
        model_path = extract_model_archive(args.model_dir, model_folder)
        # TensorFlow takes seconds to import, so the cheap checks above run first.
        import keras

        from common import ranking

        model = keras.saving.load_model(model_path)
    num_features = model.input_shape[-1]

    table = dataset.read_table(paths)
    features = dataset.features_matrix(table)
    if features.shape[1] != num_features:
        raise StepError(
            f"the test rows have {features.shape[1]} features but the model expects {num_features}"
        )
    queries = ranking.group_queries(
        table.column("qid").to_numpy(),
        table.column("doc").to_numpy(),
        table.column("label").to_numpy(),
        features,
    )
    scores = ranking.score_queries(model, queries, args.batch_size)

    # group_queries reorders rows by qid and doc, so the output is built from the queries.
    order = np.lexsort((table.column("doc").to_numpy(), table.column("qid").to_numpy()))
    output = pa.table(
        {
            "qid": np.concatenate([np.full(len(q.docs), q.qid, dtype=np.int64) for q in queries]),
            "doc": np.concatenate([q.docs for q in queries]),
            "label": table.column("label").to_numpy()[order].astype(np.int32),
            "score": np.concatenate(scores),
            "features": pa.ListArray.from_arrays(
                pa.array(np.arange(0, features.size + 1, num_features), pa.int32()),
                pa.array(features[order].ravel()),
            ),
        },
        schema=prediction_schema(),
    )
    pq.write_table(output, output_path)
    log.info(
        "scored %d queries, %d rows from %d file(s) into %s in %.1f s",
        len(queries),
        output.num_rows,
        len(paths),
        output_path,
        time.monotonic() - started,
    )


if __name__ == "__main__":
    contract.run_step(main)

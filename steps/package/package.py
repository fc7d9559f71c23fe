"""Package step (SageMaker Processing, TensorFlow): build model.tar.gz for TensorFlow Serving.

The archive has the layout that the SageMaker TensorFlow Serving container expects:

    <model-version>/saved_model.pb, <model-version>/variables/...
    code/inference.py, code/schema.json

The SavedModel's `serving_default` signature takes `features`, float32
[documents, num_features] of RAW feature values, normalises them with the train split's
mean and standard deviation from schema.json, and returns `scores`, float32 [documents].
The step loads the exported SavedModel back and checks its scores against the Keras model
before writing the archive.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from common import contract  # noqa: E402
from common.contract import StepError  # noqa: E402

log = logging.getLogger("package")

INFERENCE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inference.py")
# Largest absolute difference tolerated between SavedModel and Keras scores (float32).
SCORE_TOLERANCE = 1e-4


def parse_arguments(argv=None):
    parser = contract.ArgumentParser(prog="package.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir",
        default="/opt/ml/processing/input/model",
        help="folder with model.tar.gz from the train step",
    )
    parser.add_argument(
        "--schema-dir",
        default="/opt/ml/processing/input/schema",
        help="folder with schema.json from the prepare step",
    )
    parser.add_argument(
        "--output-dir",
        default="/opt/ml/processing/output/package",
        help="folder that receives model.tar.gz",
    )
    parser.add_argument(
        "--model-version",
        type=int,
        default=1,
        help="TensorFlow Serving model version: the SavedModel's folder name",
    )
    args = parser.parse_args(argv)
    if args.model_version < 1:
        raise StepError(f"--model-version must be a positive integer, got {args.model_version}")
    return args


def read_schema(schema_dir):
    """Return schema.json's contents. Raises StepError when normalisation data is missing."""
    path = os.path.join(schema_dir, "schema.json")
    try:
        with open(path, encoding="utf-8") as file:
            schema = json.load(file)
    except FileNotFoundError as error:
        raise StepError(f"schema file {path} not found") from error
    except json.JSONDecodeError as error:
        raise StepError(f"schema file {path} is not valid JSON: {error}") from error
    normalization = schema.get("normalization") or {}
    num_features = schema.get("num_features")
    for key in ("mean", "std"):
        values = normalization.get(key)
        if not isinstance(values, list) or len(values) != num_features:
            raise StepError(
                f"{path} needs normalization.{key} with num_features ({num_features}) values"
            )
    if min(normalization["std"]) <= 0:
        raise StepError(f"{path} has a normalization.std value of 0 or below")
    return schema


def export_saved_model(model, mean, std, path):
    """Write a SavedModel whose serving signature scores raw feature vectors."""
    import keras
    import tensorflow as tf

    num_features = len(mean)

    @tf.function(input_signature=[tf.TensorSpec([None, num_features], tf.float32, name="features")])
    def serve(features):
        # The constants are created inside the function so that they are saved in its graph.
        normalized = (features - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
        # The model scores [queries, documents, features]; all documents form one list.
        scores = model(normalized[tf.newaxis, :, :], training=False)[0]
        return {"scores": scores}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve)
    archive.write_out(path, verbose=False)


def verify_saved_model(model, mean, std, path):
    """Compare the SavedModel's scores on random raw rows with the Keras model's scores."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    mean_array, std_array = np.asarray(mean), np.asarray(std)
    raw = (mean_array + std_array * rng.normal(size=(7, len(mean)))).astype(np.float32)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    served = signature(features=tf.constant(raw))["scores"].numpy()
    normalized = ((raw - mean_array) / std_array).astype(np.float32)
    expected = np.asarray(model(normalized[np.newaxis], training=False))[0]
    if served.shape != expected.shape:
        raise StepError(
            f"the SavedModel returned scores of shape {served.shape}, expected {expected.shape}"
        )
    difference = float(np.max(np.abs(served - expected)))
    if difference > SCORE_TOLERANCE:
        raise StepError(
            f"the SavedModel's scores differ from the Keras model's by up to {difference:.3g}"
        )
    return difference


def write_archive(staging, archive_path):
    """Tar the staging folder's contents, with paths relative to it, atomically."""
    partial = archive_path + ".partial"
    with tarfile.open(partial, "w:gz") as archive:
        for root, dirs, files in os.walk(staging):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                archive.add(path, arcname=os.path.relpath(path, staging))
    os.replace(partial, archive_path)


def main():
    contract.configure_logging("package")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    args = parse_arguments()
    started = time.monotonic()
    schema = read_schema(args.schema_dir)
    mean = [float(value) for value in schema["normalization"]["mean"]]
    std = [float(value) for value in schema["normalization"]["std"]]

    import keras

    from common.model_archive import extract_model_archive

    with tempfile.TemporaryDirectory(prefix="package-") as work:
        model = keras.saving.load_model(
            extract_model_archive(args.model_dir, os.path.join(work, "model"))
        )
        if model.input_shape[-1] != len(mean):
            raise StepError(
                f"the model expects {model.input_shape[-1]} features but schema.json has {len(mean)}"
            )

        staging = os.path.join(work, "staging")
        saved_model_dir = os.path.join(staging, str(args.model_version))
        export_saved_model(model, mean, std, saved_model_dir)
        difference = verify_saved_model(model, mean, std, saved_model_dir)
        log.info("SavedModel scores match the Keras model within %.3g", difference)

        code_dir = os.path.join(staging, "code")
        os.makedirs(code_dir)
        shutil.copyfile(INFERENCE_SCRIPT, os.path.join(code_dir, "inference.py"))
        with open(os.path.join(code_dir, "schema.json"), "w", encoding="utf-8") as file:
            json.dump(schema, file, indent=2)

        os.makedirs(args.output_dir, exist_ok=True)
        archive_path = os.path.join(args.output_dir, "model.tar.gz")
        write_archive(staging, archive_path)
    log.info("wrote %s in %.1f s", archive_path, time.monotonic() - started)


if __name__ == "__main__":
    contract.run_step(main)

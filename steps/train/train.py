"""Train step (SageMaker Training, TensorFlow 2 with Keras 3): fit the ranking model.

Reads the Parquet channels `train` and `validation` (SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION),
trains with a custom tf.GradientTape loop (`steps_per_execution` steps per tf.function call,
with the next batches and their dropout masks built by a background thread), and writes
`model.keras` and `training_summary.json` to SM_MODEL_DIR and `history.json` to
SM_OUTPUT_DATA_DIR. After each epoch it prints one metrics line to stdout:

    epoch=3 train:loss=0.8120 validation:ndcg@10=0.4411 validation:best_ndcg@10=0.4502

The saved weights are those of the epoch with the best validation NDCG@10, so
`validation:best_ndcg@10`, the best value so far, is the validation NDCG@10 of the model that
the job would save if it ended after this epoch: the objective to tune on.
Hyperparameters arrive as `--name value` arguments, as the SageMaker training toolkit
passes them.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import contextlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402

from common import contract, distributed, profiling  # noqa: E402
from common.contract import StepError  # noqa: E402

log = logging.getLogger("train")

# The names of common.ranking.LOSSES, repeated here so that an invalid --loss fails before
# the seconds-long TensorFlow import.
LOSSES = ("softmax", "pairwise_logistic")


def parse_arguments(argv=None):
    parser = contract.ArgumentParser(prog="train.py", description=__doc__.splitlines()[0])
    # Each hyperparameter accepts the underscore name that config.ini uses and the
    # hyphenated form.
    parser.add_argument(
        "--epochs", type=int, default=30, help="number of passes over the train split"
    )
    parser.add_argument(
        "--batch_size",
        "--batch-size",
        dest="batch_size",
        type=int,
        default=8,
        help="queries per batch",
    )
    parser.add_argument(
        "--learning_rate",
        "--learning-rate",
        dest="learning_rate",
        type=float,
        default=0.001,
        help="Adam learning rate",
    )
    parser.add_argument(
        "--hidden_units",
        "--hidden-units",
        dest="hidden_units",
        default="128,64",
        help="comma-separated sizes of the hidden layers, e.g. 128,64",
    )
    parser.add_argument(
        "--dropout", type=float, default=0.1, help="dropout rate after each hidden layer"
    )
    parser.add_argument("--loss", default="softmax", help=f"loss function: {' or '.join(LOSSES)}")
    parser.add_argument(
        "--seed", type=int, default=42, help="seed of initialisation, dropout and shuffling"
    )
    parser.add_argument(
        "--steps_per_execution",
        "--steps-per-execution",
        dest="steps_per_execution",
        type=int,
        default=1,
        help="training steps that one call of the tf.function runs, as in Keras's "
        "Model.compile; more steps per call spend less time in Python between steps",
    )
    parser.add_argument(
        "--intra_op_parallelism_threads",
        "--intra-op-parallelism-threads",
        dest="intra_op_parallelism_threads",
        type=int,
        default=0,
        help="threads that one TensorFlow operation may use; 0 lets TensorFlow choose. With "
        "small operations on few cores, 1 is faster: operations then run side by side",
    )
    parser.add_argument(
        "--profile_steps",
        "--profile-steps",
        dest="profile_steps",
        default="",
        help="FIRST,LAST: trace training steps FIRST to LAST with the TensorFlow profiler into "
        "/opt/ml/output/tensorboard (default: no trace). Each call of steps_per_execution steps "
        "is traced whole, and the first call, which builds the graph, is never traced (a window "
        "within it traces the second call)",
    )
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # The SageMaker Python SDK's TensorFlow estimator passes --model_dir, an S3 URI.
        log.warning("ignoring unknown arguments: %s", " ".join(unknown))

    if args.epochs < 1:
        raise StepError(f"epochs must be at least 1, got {args.epochs}")
    if args.batch_size < 1:
        raise StepError(f"batch_size must be at least 1, got {args.batch_size}")
    if args.steps_per_execution < 1:
        raise StepError(f"steps_per_execution must be at least 1, got {args.steps_per_execution}")
    if args.intra_op_parallelism_threads < 0:
        raise StepError(
            "intra_op_parallelism_threads must be 0 (TensorFlow's choice) or more, "
            f"got {args.intra_op_parallelism_threads}"
        )
    if not args.learning_rate > 0:
        raise StepError(f"learning_rate must be above 0, got {args.learning_rate}")
    if not 0 <= args.dropout < 1:
        raise StepError(f"dropout must be in [0, 1), got {args.dropout}")
    if args.loss not in LOSSES:
        raise StepError(f"invalid loss {args.loss!r}: expected one of {', '.join(LOSSES)}")
    args.hidden_units = parse_hidden_units(args.hidden_units)
    try:
        args.profile_steps = profiling.parse_step_range(args.profile_steps)
    except ValueError as error:
        raise StepError(f"profile_steps: {error}") from None
    return args


def parse_hidden_units(text: str) -> list[int]:
    """Parse "128,64" into [128, 64]. Raises StepError unless all sizes are positive integers."""
    try:
        units = [int(part) for part in text.split(",")]
    except ValueError:
        units = []
    if not units or min(units) < 1:
        raise StepError(
            f"invalid hidden_units {text!r}: expected comma-separated positive integers, e.g. 128,64"
        )
    return units


def channel_dir(name: str) -> str:
    return os.environ.get(f"SM_CHANNEL_{name.upper()}") or contract.opt_ml("input", "data", name)


def load_queries(folder: str, split: str):
    from common import dataset, ranking

    paths = dataset.list_parquet_files(folder)
    if not paths:
        raise StepError(f"no Parquet files found in the {split} channel {folder}")
    table = dataset.read_table(paths)
    if table.num_rows == 0:
        raise StepError(f"the {split} channel {folder} contains no rows")
    queries = ranking.group_queries(
        table.column("qid").to_numpy(),
        table.column("doc").to_numpy(),
        table.column("label").to_numpy(),
        dataset.features_matrix(table),
    )
    log.info(
        "%s: %d queries, %d rows from %d file(s)", split, len(queries), table.num_rows, len(paths)
    )
    return queries, table.num_rows


def mean_ndcg_at_10(model, queries, batch_size):
    import numpy as np

    from common import metrics, ranking

    scores = ranking.score_queries(model, queries, batch_size)
    return float(
        np.mean(
            [
                metrics.ndcg_at_k(query.labels, query_scores, 10)
                for query, query_scores in zip(queries, scores, strict=True)
            ]
        )
    )


def tensorboard_dir() -> str:
    """Return the folder of TensorBoard logs, which TensorBoardOutputConfig.LocalPath names."""
    return contract.opt_ml("output", "tensorboard")


def train(args, train_queries, validation_queries, num_features, timer=None, trace=None):
    """Run the training loop and return (model, history, best epoch).

    `timer` (a profiling.StepTimer) times each call of the training function, and `trace` (a
    profiling.TraceWindow), when given, traces the calls of its steps.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from common import prefetch, ranking

    if args.intra_op_parallelism_threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_parallelism_threads)
        except RuntimeError as error:
            # TensorFlow takes the setting only before it runs its first operation.
            log.warning("intra_op_parallelism_threads not applied: %s", error)
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()

    model = ranking.build_model(num_features, args.hidden_units, args.dropout, args.seed)
    optimizer = keras.optimizers.Adam(learning_rate=args.learning_rate)
    optimizer.build(model.trainable_variables)
    loss_function = ranking.loss_function(args.loss)

    def apply_gradients(tape, loss):
        tape = distributed.wrap_tape(tape)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))

    # Each batch is in ranking.flat_batches' layout: the documents of all its queries in one
    # list, without padding. The model scores each document on its own, so the scores are
    # those of the padded layout, at a fraction of its cost. Each loss gets only the arrays it
    # reads, because every argument is copied into a tensor at every call. The dropout masks
    # come from ranking.dropout_masks, drawn with the batches.
    def pairwise_step(features, masks, pairs):
        with tf.GradientTape() as tape:
            scores = ranking.training_scores(model, features, masks)
            loss = ranking.pairwise_logistic_loss_on_pairs(scores, pairs)
        apply_gradients(tape, loss)
        return loss

    def listwise_step(features, masks, labels, positions):
        # The listwise loss needs labels and scores in the padded [queries, list size] layout.
        shape = tf.reduce_max(positions, axis=0) + 1
        padded_labels = tf.scatter_nd(positions, labels, shape)
        mask = tf.scatter_nd(positions, tf.ones_like(labels), shape) > 0
        with tf.GradientTape() as tape:
            scores = ranking.training_scores(model, features, masks)
            padded_scores = tf.scatter_nd(positions, scores, shape)
            loss = loss_function(padded_labels, padded_scores, mask)
        apply_gradients(tape, loss)
        return loss

    # One call runs every batch of a ranking.BatchGroup in a graph loop, so Python's cost of a
    # call is paid once per group. Each batch gets the same training step as in its own call.
    features_spec = tf.TensorSpec([None, num_features], tf.float32)
    splits_spec = tf.TensorSpec([None], tf.int32)
    masks_spec = [tf.TensorSpec([None, units], tf.float32) for units in args.hidden_units]
    if args.dropout == 0:
        masks_spec = []

    def run_steps(step, features, masks, document_splits, arrays, splits):
        steps = tf.shape(document_splits)[0] - 1
        losses = tf.TensorArray(tf.float32, size=steps)
        for index in tf.range(steps):
            start, end = document_splits[index], document_splits[index + 1]
            batch_masks = [layer_masks[start:end] for layer_masks in masks]
            batch_arrays = [
                array[start:end] if split is None else array[split[index] : split[index + 1]]
                for array, split in zip(arrays, splits, strict=True)
            ]
            loss = step(features[start:end], batch_masks, *batch_arrays)
            losses = losses.write(index, loss)
        return losses.stack()

    @tf.function(
        input_signature=[
            features_spec,
            masks_spec,
            splits_spec,
            tf.TensorSpec([None, 2], tf.int32),
            splits_spec,
        ]
    )
    def pairwise_steps(features, masks, document_splits, pairs, pair_splits):
        return run_steps(pairwise_step, features, masks, document_splits, [pairs], [pair_splits])

    @tf.function(
        input_signature=[
            features_spec,
            masks_spec,
            splits_spec,
            tf.TensorSpec([None], tf.float32),
            tf.TensorSpec([None, 2], tf.int32),
        ]
    )
    def listwise_steps(features, masks, document_splits, labels, positions):
        return run_steps(
            listwise_step, features, masks, document_splits, [labels, positions], [None, None]
        )

    def train_steps(group, masks):
        if args.loss == "pairwise_logistic":
            return pairwise_steps(
                group.features, masks, group.document_splits, group.pairs, group.pair_splits
            )
        return listwise_steps(
            group.features, masks, group.document_splits, group.labels, group.positions
        )

    # Each worker trains on its own share of the queries.
    train_queries = distributed.shard(train_queries)
    flat_queries = ranking.FlatQueries(train_queries)
    # Every worker starts from rank 0's weights and optimizer state.
    distributed.broadcast_variables(model.variables)
    distributed.broadcast_variables(optimizer.variables)
    rng = np.random.default_rng(args.seed + distributed.rank())
    # Dropout draws from a stream of its own, so the shuffle stays that of `rng` alone.
    dropout_rng = np.random.default_rng([args.seed, distributed.rank()])
    timer = timer or profiling.StepTimer()
    step = 0
    history = []
    best_ndcg, best_epoch, best_weights = -1.0, 0, None
    batches_per_epoch = -(-len(flat_queries) // args.batch_size)
    calls_per_epoch = -(-batches_per_epoch // args.steps_per_execution)

    def every_epoch_groups():
        for _ in range(args.epochs):
            for group in ranking.batch_groups(
                flat_queries, args.batch_size, args.steps_per_execution, rng
            ):
                masks = ranking.dropout_masks(
                    dropout_rng, group.document_splits, args.hidden_units, args.dropout
                )
                yield group, masks

    # The next groups are built while the current ones train and validate.
    with prefetch.Prefetch(every_epoch_groups()) as groups:
        for epoch in range(1, args.epochs + 1):
            loss_sum, query_count = 0.0, 0
            epoch_groups = itertools.islice(groups, calls_per_epoch)
            for group, masks in timer.batches(epoch_groups, steps=lambda item: item[0].steps):
                with trace.step(step + 1, group.steps) if trace else contextlib.nullcontext():
                    losses = train_steps(group, masks).numpy()
                step += group.steps
                for loss, queries in zip(losses, group.queries, strict=True):
                    loss_sum += float(loss) * int(queries)
                    query_count += int(queries)
            train_loss = distributed.mean_across_workers(loss_sum / query_count)
            validation_ndcg = mean_ndcg_at_10(model, validation_queries, args.batch_size)
            history.append(
                {"epoch": epoch, "train:loss": train_loss, "validation:ndcg@10": validation_ndcg}
            )
            if validation_ndcg > best_ndcg:
                best_ndcg, best_epoch, best_weights = validation_ndcg, epoch, model.get_weights()
            if distributed.is_chief():
                print(
                    f"epoch={epoch} train:loss={train_loss:.4f} "
                    f"validation:ndcg@10={validation_ndcg:.4f} "
                    f"validation:best_ndcg@10={best_ndcg:.4f}",
                    flush=True,
                )

    if trace is not None:
        trace.close()
    model.set_weights(best_weights)
    distributed.check_synchronized(model.weights)
    return model, history, best_epoch


def main():
    contract.configure_logging("train")
    # Hide TensorFlow's C++ INFO lines about CPU instructions and oneDNN.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    args = parse_arguments()
    distributed.initialize()
    started = time.monotonic()

    train_queries, train_rows = load_queries(channel_dir("train"), "train")
    validation_queries, validation_rows = load_queries(channel_dir("validation"), "validation")
    num_features = train_queries[0].features.shape[1]
    validation_features = validation_queries[0].features.shape[1]
    if validation_features != num_features:
        raise StepError(
            f"train rows have {num_features} features but validation rows have {validation_features}"
        )

    timer = profiling.StepTimer()
    trace = None
    if args.profile_steps and distributed.is_chief():
        trace = profiling.TraceWindow(tensorboard_dir(), *args.profile_steps)
    model, history, best_epoch = train(
        args, train_queries, validation_queries, num_features, timer, trace
    )
    best = history[best_epoch - 1]
    step_time = timer.summary()
    if distributed.is_chief() and "ms_per_step" in step_time:
        log.info(
            "step time: %.2f ms per step (input %.2f ms, compute %.2f ms, input share %.1f%%), "
            "%d steps, first call (%d steps) %.0f ms",
            step_time["ms_per_step"],
            step_time["input_ms_per_step"],
            step_time["compute_ms_per_step"],
            100 * step_time["input_share"],
            step_time["steps"],
            step_time["first_call_steps"],
            step_time["first_step_ms"],
        )
    log.info(
        "best epoch %d of %d: validation NDCG@10 %.4f, %.1f s",
        best_epoch,
        args.epochs,
        best["validation:ndcg@10"],
        time.monotonic() - started,
    )
    if not distributed.is_chief():
        return

    model_dir = os.environ.get("SM_MODEL_DIR") or contract.opt_ml("model")
    output_data_dir = os.environ.get("SM_OUTPUT_DATA_DIR") or contract.opt_ml("output", "data")
    os.makedirs(model_dir, exist_ok=True)
    os.makedirs(output_data_dir, exist_ok=True)
    model.save(os.path.join(model_dir, "model.keras"))
    summary = {
        "best_epoch": best_epoch,
        "metrics": {
            "train:loss": best["train:loss"],
            "validation:ndcg@10": best["validation:ndcg@10"],
            "last_epoch_train:loss": history[-1]["train:loss"],
        },
        "hyperparameters": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "hidden_units": args.hidden_units,
            "dropout": args.dropout,
            "loss": args.loss,
            "seed": args.seed,
            "steps_per_execution": args.steps_per_execution,
            "intra_op_parallelism_threads": args.intra_op_parallelism_threads,
        },
        "num_features": num_features,
        "data": {
            "train": {"queries": len(train_queries), "rows": train_rows},
            "validation": {"queries": len(validation_queries), "rows": validation_rows},
        },
        "workers": distributed.size(),
        "step_time": step_time,
        "training_seconds": round(time.monotonic() - started, 2),
    }
    with open(os.path.join(model_dir, "training_summary.json"), "w", encoding="utf-8") as file:
        json.dump(summary, file, indent=2)
    with open(os.path.join(output_data_dir, "history.json"), "w", encoding="utf-8") as file:
        json.dump(history, file, indent=2)
    log.info("saved model.keras and training_summary.json to %s", model_dir)
    if trace is not None:
        write_profile(trace, step_time)


def write_profile(trace, step_time) -> None:
    """Write step_time.json, the step-time breakdown with the trace's slowest operations, next
    to the trace in tensorboard_dir(), and print the slowest operations."""
    folder = tensorboard_dir()
    operations = profiling.slowest_operations(folder)
    # A call of several steps is traced whole, so the traced steps can exceed the window.
    profile = {
        "traced_steps": list(trace.traced_range or ()),
        **step_time,
        "slowest_operations": operations,
    }
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "step_time.json"), "w", encoding="utf-8") as file:
        json.dump(profile, file, indent=2)
    for operation in operations:
        log.info(
            "profile: %.1f ms %.1f%% %s %s (%d runs)",
            operation["total_ms"],
            100 * operation["share"],
            operation["type"],
            operation["name"],
            operation["count"],
        )
    log.info("profiler trace and step_time.json in %s", folder)


if __name__ == "__main__":
    contract.run_step(main)

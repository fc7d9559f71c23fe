"""Time the train step's training loop on prepared data: ms per step, input against compute.

Each measurement runs one version of steps/train/train.py in a fresh Python process, so
TensorFlow starts cold every time, and the versions alternate (A B A B ...) so that both
see the same machine load. A version is a git revision (its steps/ folder is extracted
with `git archive`) or "worktree" for the files on disk.

The loop's batch generator is wrapped: the time spent inside the generator is input time,
the time between two items is compute (the train step and its bookkeeping). An item is a
batch (one step) or, for a train step with steps_per_execution, a group of batches that one
call trains on (`batch_groups`). The first item also traces the tf.function graph, so it is
reported apart and left out of the means. Validation after each epoch is not part of any step.

    python benchmarks/train_step.py --data DIR --versions c78e431 worktree \
        --batches-function padded_batches batch_groups --repeats 2

DIR contains the `train` and `validation` channels of a train job: the Parquet files that
the prepare step wrote, e.g. <workspace>/jobs/<train job>/algo-1/opt/ml/input/data.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The hyperparameters of config.ini's [train.hyperparameters].
HYPERPARAMETERS = [
    "--epochs", "30", "--batch_size", "8", "--learning_rate", "0.001",
    "--hidden_units", "128,64", "--dropout", "0.1", "--loss", "pairwise_logistic", "--seed", "42",
    "--steps_per_execution", "32", "--intra_op_parallelism_threads", "1",
]  # fmt: skip


def steps_folder(version: str, scratch: Path) -> Path:
    """Return the steps/ folder of `version`: the worktree's, or one extracted from git."""
    if version == "worktree":
        return REPO / "steps"
    target = scratch / version
    if not target.exists():
        archive = subprocess.run(
            ["git", "archive", "--format=tar", version, "steps"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
        target.mkdir(parents=True)
        archive_path = target / "steps.tar"
        archive_path.write_bytes(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(target, filter="data")
    return target / "steps"


def wrap_batches(ranking, name, inputs, computes, step_counts, cpu_marks) -> None:
    """Replace the batch generator `ranking.<name>` with one that times each item."""
    original = getattr(ranking, name)

    def timed_batches(*args, **kwargs):
        iterator = iter(original(*args, **kwargs))
        yielded_at = None
        while True:
            requested_at = time.perf_counter()
            cpu_marks.append(time.process_time())
            if yielded_at is not None:
                computes.append(requested_at - yielded_at)
            try:
                batch = next(iterator)
            except StopIteration:
                return
            yielded_at = time.perf_counter()
            inputs.append(yielded_at - requested_at)
            step_counts.append(getattr(batch, "steps", 1))
            yield batch

    setattr(ranking, name, timed_batches)


def measure(steps: Path, data: Path, batches_function: str) -> dict:
    """Run one training loop of the train.py in `steps` and return its timings (in this process)."""
    sys.path.insert(0, str(steps))
    spec = importlib.util.spec_from_file_location("train_under_test", steps / "train" / "train.py")
    train_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_module)
    from common import ranking

    inputs: list[float] = []
    computes: list[float] = []
    # Training steps of each item: a batch is one step, and a BatchGroup contains several.
    step_counts: list[int] = []
    # Process CPU seconds (all threads) at each step's start; less sensitive than wall time to
    # other processes on a busy machine.
    cpu_marks: list[float] = []
    args = train_module.parse_arguments(HYPERPARAMETERS)
    train_queries, _ = train_module.load_queries(str(data / "train"), "train")
    validation_queries, _ = train_module.load_queries(str(data / "validation"), "validation")
    num_features = train_queries[0].features.shape[1]
    started = time.perf_counter()
    if "timer" in inspect.signature(train_module.train).parameters:
        # The loop times itself: its StepTimer measures the time it waits for each item,
        # also when a background thread builds the items.
        from common import profiling

        class CpuMarkingTimer(profiling.StepTimer):
            def batches(self, iterable, **kwargs):
                iterator = super().batches(iterable, **kwargs)
                while True:
                    cpu_marks.append(time.process_time())
                    try:
                        item = next(iterator)
                    except StopIteration:
                        return
                    yield item

        timer = CpuMarkingTimer()
        _, history, best_epoch = train_module.train(
            args, train_queries, validation_queries, num_features, timer
        )
        inputs, computes = timer.input_seconds, timer.compute_seconds
        step_counts = getattr(timer, "step_counts", [1] * len(inputs))
    else:
        wrap_batches(ranking, batches_function, inputs, computes, step_counts, cpu_marks)
        _, history, best_epoch = train_module.train(
            args, train_queries, validation_queries, num_features
        )
    total = time.perf_counter() - started
    steady_input, steady_compute, steady_steps = inputs[1:], computes[1:], step_counts[1:]
    steps = sum(steady_steps)
    # Items 2..N: from the request of item 2 to the request after the last item of each
    # epoch, minus the validation between epochs, which runs outside the generator.
    epochs = history[-1]["epoch"]
    per_epoch = len(computes) // epochs
    cpu_item_seconds = [
        cpu_marks[epoch * (per_epoch + 1) + index + 1] - cpu_marks[epoch * (per_epoch + 1) + index]
        for epoch in range(epochs)
        for index in range(per_epoch)
        if epoch or index
    ]
    return {
        "steps": sum(step_counts),
        "first_step_ms": 1000 * (inputs[0] + computes[0]),
        "first_item_steps": step_counts[0],
        "ms_per_step": 1000 * (sum(steady_input) + sum(steady_compute)) / steps,
        "median_ms_per_step": statistics.median(
            1000 * (i + c) / n
            for i, c, n in zip(steady_input, steady_compute, steady_steps, strict=True)
        ),
        "input_ms_per_step": 1000 * sum(steady_input) / steps,
        "compute_ms_per_step": 1000 * sum(steady_compute) / steps,
        "input_share": sum(steady_input) / (sum(steady_input) + sum(steady_compute)),
        "cpu_ms_per_step": 1000 * sum(cpu_item_seconds) / steps,
        "training_loop_seconds": total,
        "best_validation_ndcg_at_10": history[best_epoch - 1]["validation:ndcg@10"],
        "best_epoch": best_epoch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="folder with train/ and validation/"
    )
    parser.add_argument("--versions", nargs="+", default=["c78e431", "worktree"])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each version")
    parser.add_argument(
        "--batches-function",
        nargs="+",
        default=["padded_batches"],
        help="the common.ranking generator each version's loop draws batches from, one per "
        "version or one for all",
    )
    parser.add_argument("--one", nargs=2, metavar=("STEPS", "FUNCTION"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.one:
        print(json.dumps(measure(Path(arguments.one[0]), arguments.data, arguments.one[1])))
        return

    functions = arguments.batches_function
    if len(functions) == 1:
        functions = functions * len(arguments.versions)
    results: dict[str, list[dict]] = {version: [] for version in arguments.versions}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(arguments.repeats):
            for version, function in zip(arguments.versions, functions, strict=True):
                steps = steps_folder(version, Path(scratch))
                output = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--data",
                        str(arguments.data),
                        "--one",
                        str(steps),
                        function,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"},
                ).stdout
                result = json.loads(output.strip().splitlines()[-1])
                results[version].append(result)
                print(version, json.dumps(result), flush=True)
    for version, runs in results.items():
        print(
            f"{version}: {statistics.fmean(r['ms_per_step'] for r in runs):.2f} ms per step "
            f"(median of runs' medians {statistics.median(r['median_ms_per_step'] for r in runs):.2f}), "
            f"CPU {statistics.fmean(r['cpu_ms_per_step'] for r in runs):.2f} ms per step, "
            f"input share {100 * statistics.fmean(r['input_share'] for r in runs):.1f}%, "
            f"first step {statistics.fmean(r['first_step_ms'] for r in runs):.0f} ms, "
            f"best validation NDCG@10 {runs[0]['best_validation_ndcg_at_10']:.4f}"
        )


if __name__ == "__main__":
    main()

"""Measure the train step's examples per second on 1 and on 2 Horovod ranks, MSLR sample.

Run from the repository root with the project's environment and the horovod extra, after
`python sample_data/fetch.py`:

    python benchmarks/distributed_training.py --repeats 2

Each measurement is a `harness run` of prepare and train with `[train] instance_count` set to
1 or 2, in one temporary workspace. So prepare runs once and comes from the cache afterwards,
while train runs every time (--from train). Three settings alternate, so that load changes
affect all alike:

- 1 rank, batch_size 8 (config.ini);
- 2 ranks, batch_size 8: each step averages 2 batches of 8 queries, so an epoch has half as
  many steps;
- 1 rank, batch_size 16: the same queries per step as 2 ranks of 8, the fair baseline.

For each train job it reads training_summary.json:

- examples per second: train rows times epochs, divided by `training_seconds`, which the step
  measures from after Horovod starts to before saving, so data loading and the validation
  after each epoch are included;
- the job's wall time, which adds process start, TensorFlow's import and horovodrun's start.

The results are printed as a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


SETTINGS = ((1, 8), (2, 8), (1, 16))  # (ranks, batch_size)


def run_train(ranks: int, batch_size: int, workspace: Path, first: bool) -> dict:
    command = [
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        "--quiet",
        "--no-local",
        "--set",
        "pipeline.steps=prepare,train",
        "--set",
        f"pipeline.workspace={workspace}",
        "--set",
        f"train.instance_count={ranks}",
        "--set",
        f"train.hyperparameters.batch_size={batch_size}",
    ]
    if not first:
        command += ["--from", "train"]
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)

    [record_path] = sorted((workspace / "runs").glob("*.json"), key=os.path.getmtime)[-1:]
    record = json.loads(record_path.read_text())
    [train] = [step for step in record["steps"] if step["step"] == "train"]
    summary_path = (
        workspace / "jobs" / train["name"] / "algo-1" / "opt" / "ml" / "model"
    ) / "training_summary.json"
    summary = json.loads(summary_path.read_text())
    rows = summary["data"]["train"]["rows"]
    epochs = summary["hyperparameters"]["epochs"]
    return {
        "ranks": ranks,
        "batch_size": batch_size,
        "workers": summary["workers"],
        "rows": rows,
        "epochs": epochs,
        "training_seconds": summary["training_seconds"],
        "examples_per_second": rows * epochs / summary["training_seconds"],
        "job_seconds": train["duration"],
        "best_ndcg": summary["metrics"]["validation:ndcg@10"],
        "load_after": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="measurements per rank count")
    args = parser.parse_args()

    results = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="harness-distributed-bench-") as folder:
        workspace = Path(folder) / "workspace"
        first = True
        for _ in range(args.repeats):
            for ranks, batch_size in SETTINGS:
                result = run_train(ranks, batch_size, workspace, first)
                first = False
                print(json.dumps(result), file=sys.stderr, flush=True)
                results.append(result)
    load_after = os.getloadavg()

    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores")
    print(f"Command: python benchmarks/distributed_training.py --repeats {args.repeats}")
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        "Load average (1, 5, 15 min): before "
        + ", ".join(f"{value:.2f}" for value in load_before)
        + "; after "
        + ", ".join(f"{value:.2f}" for value in load_after)
        + "\n"
    )
    print(
        "| ranks | batch_size | train rows x epochs | training time | examples/s "
        "| train job wall time | best validation NDCG@10 | 1-min load after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['ranks']} | {r['batch_size']} | {r['rows']} x {r['epochs']} | {r['training_seconds']:.1f} s | "
            f"{r['examples_per_second']:.0f} | {r['job_seconds']:.1f} s | {r['best_ndcg']:.4f} "
            f"| {r['load_after']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

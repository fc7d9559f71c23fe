"""Compare the tuning strategies on the MSLR sample: epochs trained and best objective.

Run from the repository root with the project's environment, after `python sample_data/fetch.py`:

    python benchmarks/tuning_strategies.py --max-jobs 27 --seeds 1 2 3

For each strategy (Random, Bayesian, Hyperband) and seed it runs `harness run` of prepare and
train, with train as a tuning job of the same search space and max jobs, in a temporary
workspace, and reads the tuning job's trial table. Epochs trained is the number of values of
the objective metric that the training jobs printed (one per epoch). The results are printed
as a Markdown table for docs/benchmarks.md. The objective is `validation:best_ndcg@10`, the
validation NDCG@10 of the model each job saves (its best epoch so far), and a tuning job's best
is that of its best training job with a model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TUNING = """
[tuning]
strategy = {strategy}
objective_metric = validation:best_ndcg@10
objective_type = Maximize
max_jobs = {max_jobs}
max_parallel_jobs = {parallel}
random_seed = {seed}
{extra}
[tuning.ranges]
learning_rate = continuous 0.0001..0.03 Logarithmic
dropout = continuous 0.0..0.5
hidden_units = categorical 32,16 | 64,32 | 128,64
"""


def run_tuning(
    strategy: str,
    seed: int,
    max_jobs: int,
    parallel: int,
    folder: Path,
    min_resource: int,
    epochs: int,
) -> dict:
    workspace = folder / f"{strategy}-{seed}"
    settings = folder / f"{strategy}-{seed}.ini"
    extra = f"min_resource = {min_resource}\n" if strategy == "Hyperband" else ""
    settings.write_text(
        TUNING.format(
            strategy=strategy, max_jobs=max_jobs, parallel=parallel, seed=seed, extra=extra
        )
    )
    command = [
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        "--quiet",
        "--no-local",
        "-c",
        str(settings),
        "--set",
        "pipeline.steps=prepare,train",
        "--set",
        f"pipeline.workspace={workspace}",
        # Hyperband's MaxResource is inferred from the epochs hyperparameter.
        "--set",
        f"train.hyperparameters.epochs={epochs}",
    ]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    [table_path] = [
        p for p in (workspace / "tuning").glob("*.json") if not p.name.endswith(".models.json")
    ]
    table = json.loads(table_path.read_text())
    jobs = table["training_jobs"]
    # The best training job that left a model: the one whose model predict would read.
    [best] = [job for job in jobs if job["name"] == table["best_training_job"]]
    return {
        "strategy": strategy,
        "seed": seed,
        "epochs": sum(len(job["intermediate_values"]) for job in jobs),
        "best": best["objective"],
        "stopped": sum(job["status"] == "Stopped" for job in jobs),
        "seconds": elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-jobs", type=int, default=27, help="training jobs per tuning job")
    parser.add_argument("--parallel", type=int, default=2, help="training jobs at once")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="random seeds")
    parser.add_argument(
        "--strategies", nargs="+", default=["Random", "Bayesian", "Hyperband"], help="strategies"
    )
    parser.add_argument(
        "--min-resource", type=int, default=3, help="Hyperband's MinResource, in epochs"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=30,
        help="epochs of each training job, and so Hyperband's MaxResource (config.ini: 30)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the workspaces and trial tables in this folder instead of a temporary one",
    )
    args = parser.parse_args()

    results = []
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="harness-tuning-bench-") as temporary:
        folder = args.keep or temporary
        for seed in args.seeds:
            for strategy in args.strategies:
                result = run_tuning(
                    strategy,
                    seed,
                    args.max_jobs,
                    args.parallel,
                    Path(folder),
                    args.min_resource,
                    args.epochs,
                )
                print(json.dumps(result), file=sys.stderr, flush=True)
                results.append(result)

    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores")
    print(
        f"Command: python benchmarks/tuning_strategies.py --max-jobs {args.max_jobs} "
        f"--parallel {args.parallel} --seeds {' '.join(map(str, args.seeds))} "
        f"--strategies {' '.join(args.strategies)} --min-resource {args.min_resource} "
        f"--epochs {args.epochs}\n"
    )
    print("| strategy | seed | epochs trained | jobs stopped | best validation NDCG@10 | time |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['strategy']} | {r['seed']} | {r['epochs']} | {r['stopped']} | "
            f"{r['best']:.4f} | {r['seconds']:.0f} s |"
        )
    print("\n| strategy | mean epochs | mean best NDCG@10 |")
    print("|---|---|---|")
    for strategy in args.strategies:
        rows = [r for r in results if r["strategy"] == strategy]
        print(
            f"| {strategy} | {statistics.mean(r['epochs'] for r in rows):.1f} | "
            f"{statistics.mean(r['best'] for r in rows):.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

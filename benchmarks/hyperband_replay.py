"""Replay a Random tuning job's learning curves through Hyperband, over many bracket deals.

A Hyperband tuning job with the same random seed as a Random one trains the same
hyperparameters. The train step is deterministic, so each of its training jobs follows the
curve that the Random job recorded, until Hyperband stops it. This script replays those
curves (the objective after each epoch, from the tuning job's trial table) through harness's
SeededHyperbandPruner, with max parallel jobs running at once and each epoch taking the time
it took in the Random job. It reports the epochs trained and the gap between the best
objective of the jobs that completed and Random's best.

One real Hyperband run shows one deal of jobs to brackets. The replay deals them with many
seeds (the curves stay those of the Random run), so it shows what to expect and how much the
deal alone moves the result.

    python benchmarks/tuning_strategies.py --strategies Random --seeds 1 2 3 4 --keep DIR
    python benchmarks/hyperband_replay.py DIR/Random-1 DIR/Random-2 DIR/Random-3 DIR/Random-4
"""

from __future__ import annotations

import argparse
import heapq
import json
import re
import statistics
import sys
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.tuning.strategies import SeededHyperbandPruner  # noqa: E402

# The training job name ends in -<launch index>-<8 hex digits>.
LAUNCH_INDEX = re.compile(r"-(\d{3})-[0-9a-f]{8}$")


def read_curves(workspace: Path) -> dict[int, tuple[list[float], float]]:
    """Return {launch index: (objective after each epoch, seconds per epoch)} of a tuning job."""
    [table] = [p for p in (workspace / "tuning").glob("*.json") if ".models." not in p.name]
    curves = {}
    for job in json.loads(table.read_text())["training_jobs"]:
        match = LAUNCH_INDEX.search(job["name"])
        values = job["intermediate_values"]
        if job["status"] != "Completed" or match is None or not values:
            continue
        curves[int(match.group(1))] = (values, job["duration"] / len(values))
    return curves


def replay(
    curves: dict[int, tuple[list[float], float]],
    pruner: optuna.pruners.BasePruner,
    parallel: int,
    max_resource: int,
    stop_lag: int,
) -> tuple[int, float]:
    """Return (epochs trained, best objective of the completed and stopped jobs) under `pruner`."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    launches = iter(sorted(curves))
    events: list[tuple[float, int, int]] = []  # (time the epoch ends, launch index, epoch)
    trials: dict[int, optuna.Trial] = {}
    epochs = 0
    best = float("-inf")

    def start(now: float) -> None:
        launch = next(launches, None)
        if launch is None:
            return
        trial = study.ask()
        trial.set_user_attr("training_job", {"launch_index": launch})
        trials[launch] = trial
        heapq.heappush(events, (now + curves[launch][1], launch, 1))

    for _ in range(parallel):
        start(0.0)
    while events:
        now, launch, epoch = heapq.heappop(events)
        values, epoch_seconds = curves[launch]
        trial = trials[launch]
        trial.report(values[epoch - 1], epoch)
        if epoch < min(len(values), max_resource) and trial.should_prune():
            # The job trains on while the stop reaches it.
            trained = min(epoch + stop_lag, len(values))
            epochs += trained
            # A stopped job keeps the model of its best epoch, and the tuning job's best
            # training job can be a stopped one (harness.tuning.records.best_record).
            best = max(best, max(values[:trained]))
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            start(now + (trained - epoch) * epoch_seconds)
        elif epoch == len(values):
            epochs += epoch
            best = max(best, max(values))
            study.tell(trial, max(values))
            start(now)
        else:
            heapq.heappush(events, (now + epoch_seconds, launch, epoch + 1))
    return epochs, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspaces", nargs="+", type=Path, help="Random tuning workspaces")
    parser.add_argument("--deals", type=int, default=100, help="bracket deals per workspace")
    parser.add_argument("--min-resource", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--max-resource", type=int, default=30)
    parser.add_argument(
        "--reduction-factor",
        type=int,
        nargs="+",
        default=[3],
        help="Hyperband's reduction factor (eta); harness uses Optuna's default, 3",
    )
    parser.add_argument("--parallel", type=int, default=2, help="training jobs at once")
    parser.add_argument(
        "--stop-lag", type=int, default=1, help="epochs a job trains after the stop decision"
    )
    args = parser.parse_args()

    print(
        "| reduction factor | MinResource | mean epochs (of Random's) | "
        "mean gap to Random's best | deals with a gap over 1% | by workspace: epochs, gap |"
    )
    print("|---|---|---|---|---|---|")
    for reduction_factor in args.reduction_factor:
        for min_resource in args.min_resource:
            rows = []
            for workspace in args.workspaces:
                curves = read_curves(workspace)
                random_epochs = sum(len(values) for values, _ in curves.values())
                random_best = max(max(values) for values, _ in curves.values())
                for deal in range(args.deals):
                    pruner = SeededHyperbandPruner(
                        1000 + deal,
                        min_resource=min_resource,
                        max_resource=args.max_resource,
                        reduction_factor=reduction_factor,
                    )
                    epochs, best = replay(
                        curves, pruner, args.parallel, args.max_resource, args.stop_lag
                    )
                    rows.append(
                        (workspace.name, epochs / random_epochs, (random_best - best) / random_best)
                    )
            print(f"| {reduction_factor} | {min_resource} | {summary(rows, args.workspaces)} |")


def summary(rows: list[tuple[str, float, float]], workspaces: list[Path]) -> str:
    """Return the table cells of one setting: mean epochs, mean gap, share of gaps over 1%."""
    by_workspace = []
    for workspace in workspaces:
        own = [row for row in rows if row[0] == workspace.name]
        by_workspace.append(
            f"{workspace.name} {100 * statistics.fmean(r[1] for r in own):.0f}%, "
            f"{100 * statistics.fmean(r[2] for r in own):.2f}%"
        )
    return (
        f"{100 * statistics.fmean(r[1] for r in rows):.1f}% | "
        f"{100 * statistics.fmean(r[2] for r in rows):.2f}% | "
        f"{100 * sum(r[2] > 0.01 for r in rows) / len(rows):.0f}% | "
        f"{'; '.join(by_workspace)}"
    )


if __name__ == "__main__":
    main()

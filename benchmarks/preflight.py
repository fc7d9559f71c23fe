"""Measure the cloud target's preflight: how soon `harness promote` reports every problem.

Run from the repository root with the project's environment:

    python benchmarks/preflight.py --runs 10

Two measurements:
- the command as a user meets it: `harness promote` with the repository's config.ini, whose
  example role, local bucket and explain step preflight rejects, from process start to exit (status 2, every
  problem printed, nothing uploaded, no network);
- preflight alone in this process (plan, requests against botocore's model, images), after a
  first call has loaded botocore's SageMaker model.

The results are printed as Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command_seconds(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "harness.cli", "promote", "--dry-run", "--no-local"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - started)
        if result.returncode != 2 or "Preflight found 3 problems" not in result.stdout:
            raise SystemExit(f"unexpected outcome:\n{result.stdout}{result.stderr}")
    return times


def in_process_seconds(runs: int) -> list[float]:
    sys.path.insert(0, str(REPO))
    from harness.cloud.plan import cloud_plan
    from harness.cloud.preflight import PreflightError, check
    from harness.config import load_config

    config = load_config(REPO / "config.ini", use_local=False)
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        try:
            check(config, cloud_plan, {})
        except PreflightError:
            pass
        times.append(time.perf_counter() - started)
    return times[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each measurement")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    command = command_seconds(args.runs)
    in_process = in_process_seconds(args.runs)
    load_after = os.getloadavg()[0]

    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores")
    print(f"Command: python benchmarks/preflight.py --runs {args.runs}")
    print(f"Load average (1 min): {load_before:.1f} before, {load_after:.1f} after\n")
    print("| measurement | median | max |")
    print("|---|---|---|")
    for name, values in (
        ("`harness promote`, start to every problem printed", command),
        ("preflight alone, in process", in_process),
    ):
        print(f"| {name} | {statistics.median(values):.2f} s | {max(values):.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

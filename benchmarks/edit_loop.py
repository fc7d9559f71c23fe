"""Measure the edit-to-metrics loop of `harness watch` against the naive loop.

Run from the repository root with the project's environment:

    python benchmarks/edit_loop.py --edits 10 --naive-runs 3

It copies the project into a temporary folder, starts `harness watch` there (warm unless
--cold) and times, for each scripted edit, the interval from the file write to the end of the
rerun's metrics table. Each edit appends a statement, so the step's code really changes.
It also times `harness run` with nothing changed, and the naive loop:
`harness run --no-cache` with cold processes, every step a fresh process with full imports,
which is what SageMaker's local mode does at best before Docker's own cost. The results are
printed as a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Ends the output of every run of the watch loop, the first included.
DONE = "run took"


class Watch:
    """A `harness watch` process whose output lines are timestamped as they arrive."""

    def __init__(self, project: Path, cold: bool) -> None:
        command = [sys.executable, "-m", "harness.cli", "watch", "--quiet", "--no-local"]
        if cold:
            command.append("--cold")
        self.process = subprocess.Popen(
            command,
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.perf_counter(), line.rstrip("\n")))

    def wait_done(self, count: int, timeout: float) -> float:
        """Wait until the count-th rerun has printed its metrics; return when it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [stamp for stamp, line in self.lines if DONE in line]
            if len(done) >= count:
                return done[count - 1]
            if self.process.poll() is not None:
                break
            time.sleep(0.01)
        tail = "\n".join(line for _, line in self.lines[-30:])
        raise RuntimeError(f"rerun {count} did not finish in {timeout} s:\n{tail}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def copy_project(target: Path) -> Path:
    shutil.copy(REPO / "config.ini", target / "config.ini")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "steps", target / "steps", ignore=ignore)
    shutil.copytree(REPO / "fixtures", target / "fixtures", ignore=ignore)
    return target


def time_edits(watch: Watch, path: Path, edits: int, done_so_far: int) -> list[float]:
    """Append a distinct statement to `path` `edits` times; return each edit-to-metrics time.

    The statement changes the module's code, not only its text, as a real edit does.
    """
    timings = []
    original = path.read_text()
    for number in range(1, edits + 1):
        time.sleep(1.0)  # Let the watcher settle, as between a person's saves.
        started = time.perf_counter()
        path.write_text(original + f"\nBENCHMARK_EDIT = {number}\n")
        finished = watch.wait_done(done_so_far + number, timeout=600)
        timings.append(finished - started)
    return timings


def time_command(command: list[str], project: Path, runs: int) -> list[float]:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=project, check=True, stdout=subprocess.DEVNULL)
        timings.append(time.perf_counter() - started)
    return timings


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def row(name: str, values: list[float]) -> str:
    return (
        f"| {name} | {len(values)} | {statistics.median(values):.2f} s | "
        f"{percentile(values, 0.9):.2f} s |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=10, help="edits timed per step")
    parser.add_argument(
        "--noop-runs", type=int, default=10, help="`harness run` with nothing changed"
    )
    parser.add_argument("--naive-runs", type=int, default=3, help="runs of the naive loop")
    parser.add_argument("--cold", action="store_true", help="run watch without warm workers")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as folder:
        project = copy_project(Path(folder))
        watch = Watch(project, cold=args.cold)
        try:
            watch.wait_done(1, timeout=900)
            evaluate = time_edits(
                watch, project / "steps" / "evaluate" / "evaluate.py", args.edits, 1
            )
            rows.append(row("edit to `steps/evaluate/evaluate.py`", evaluate))
            train = time_edits(
                watch, project / "steps" / "train" / "train.py", args.edits, 1 + args.edits
            )
            rows.append(row("edit to `steps/train/train.py`", train))
        finally:
            watch.stop()

        harness = [sys.executable, "-m", "harness.cli", "run", "--quiet", "--no-local"]
        fixtures = ["-c", "fixtures/fixtures.ini"]
        noop = time_command([*harness, *fixtures], project, args.noop_runs)
        rows.append(row("`harness run` with nothing changed", noop))
        naive = time_command([*harness, *fixtures, "--no-cache"], project, args.naive_runs)
        rows.append(row("naive loop: `harness run --no-cache`, cold processes", naive))

    mode = "cold" if args.cold else "warm"
    print(
        f"Machine: {platform.platform()}, {os.cpu_count()} cores; Python {platform.python_version()}"
    )
    print(
        f"Command: python benchmarks/edit_loop.py --edits {args.edits} --naive-runs {args.naive_runs}"
        + (" --cold" if args.cold else "")
    )
    print(f"Watch mode: {mode}\n")
    print("| measurement | samples | p50 | p90 |")
    print("|---|---|---|---|")
    for line in rows:
        print(line)
    speedup = statistics.median(naive) / statistics.median(evaluate)
    print(f"\nEvaluate edit against the naive loop: {speedup:.1f} times faster (p50 against p50).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

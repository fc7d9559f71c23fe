"""`harness watch`: rerun what a saved file affects and print the new metrics.

The loop keeps warm what is slow to start: the embedded AWS stays up between reruns, and
with a warm pool each job runs in an interpreter that has already imported TensorFlow or
started Spark. Which jobs rerun is the step cache's decision: a saved file changes the
cache keys of the steps whose code, configuration or inputs it touches, and of nothing else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import watchfiles
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.config import Config
from harness.errors import HarnessError
from harness.local.embedded import EmbeddedAWS
from harness.local.pipeline import RunRecord

logger = logging.getLogger(__name__)

# Saves closer together than this (in milliseconds) make one rerun.
DEBOUNCE_MS = 300

WATCHED_SUFFIXES = (".py", ".ini", ".txt", ".json", ".csv", ".parquet", ".yaml", ".yml")


def watched_paths(config: Config) -> list[Path]:
    """Return the step code folder, every configuration file read and a local dataset folder."""
    paths = [config.project_root / "steps"]
    for source in config.sources:
        if not source.startswith("--set"):
            path = Path(source)
            paths.append(path if path.is_absolute() else (Path.cwd() / path).resolve())
    local_file = config.project_root / "config.local.ini"
    if local_file not in paths:
        paths.append(local_file)
    if not config.pipeline.dataset.startswith("s3://"):
        paths.append((config.project_root / config.pipeline.dataset).resolve())
    return [path for path in paths if path.exists()]


def _relevant(change: watchfiles.Change, path: str) -> bool:
    name = Path(path).name
    if "__pycache__" in path or name.startswith((".", "#")) or name.endswith("~"):
        return False
    return name.endswith(WATCHED_SUFFIXES)


def snapshot(paths: Iterable[Path]) -> dict[str, int]:
    """Return the modification time (ns) of each watched file under `paths`."""
    times: dict[str, int] = {}
    for path in paths:
        files = [path] if path.is_file() else path.rglob("*")
        for file in files:
            name = str(file)
            if not _relevant(watchfiles.Change.modified, name):
                continue
            try:
                if file.is_file():
                    times[name] = file.stat().st_mtime_ns
            except OSError:
                continue
    return times


def changed_files(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """Return the files added, removed or modified between two snapshots."""
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )


def collect_metrics(record: RunRecord) -> dict[str, float]:
    """Return the run's evaluation metrics and the last value of each training metric."""
    metrics: dict[str, float] = {}
    evaluation = record.evaluation or {}
    for name, values in evaluation.get("ranking_metrics", {}).items():
        if isinstance(values, dict) and "value" in values:
            metrics[f"test {name}"] = float(values["value"])
    train = record.step("train")
    if train is not None:
        for name, values in train.metrics.items():
            if values:
                metrics[f"train {name}"] = values[-1]
    return metrics


def metrics_table(previous: dict[str, float], current: dict[str, float]) -> Table:
    table = Table(title="Metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("previous", justify="right")
    table.add_column("now", justify="right")
    table.add_column("change", justify="right")
    for name in sorted(set(previous) | set(current)):
        before, after = previous.get(name), current.get(name)
        if before is not None and after is not None:
            delta = after - before
            if delta > 0:
                style = "green"
            elif delta < 0:
                style = "red"
            else:
                style = "dim"
            change = f"[{style}]{delta:+.4f}[/{style}]"
        else:
            change = ""
        table.add_row(
            name,
            "" if before is None else f"{before:.4f}",
            "" if after is None else f"{after:.4f}",
            change,
        )
    return table


class Watcher:
    """Run the pipeline, then rerun it after each burst of saves until stopped."""

    def __init__(
        self,
        console: Console,
        load: Callable[[], Config],
        run: Callable[[Config, EmbeddedAWS | None, Any], RunRecord],
        launcher: Any = None,
    ) -> None:
        self.console = console
        self.load = load
        self.run_pipeline = run
        self.launcher = launcher
        self.aws: EmbeddedAWS | None = None
        self.previous: dict[str, float] = {}
        self.stop_event = threading.Event()
        self.reruns = 0

    def rerun(self, changed: Iterable[str] = ()) -> RunRecord | None:
        """Run once; a user mistake or a failed step is printed and the loop goes on."""
        started = time.monotonic()
        try:
            config = self.load()
        except HarnessError as error:
            self._report(error)
            return None
        if self.aws is None:
            from harness.local.pipeline import workspace_of

            self.aws = EmbeddedAWS(workspace_of(config), config.session.region).start()
        try:
            record = self.run_pipeline(config, self.aws, self.launcher)
        except HarnessError as error:
            self._report(error)
            return None
        self.reruns += 1
        current = collect_metrics(record)
        if record.failed:
            self.console.print("[red]The run failed; the loop keeps watching.[/red]")
        else:
            self.console.print(metrics_table(self.previous, current))
            self.previous = current
        self.console.print(
            f"[dim]{'rerun' if self.reruns > 1 else 'first run'} took "
            f"{time.monotonic() - started:.2f} s; watching for changes "
            "(Ctrl-C to stop)[/dim]"
        )
        return record

    def _report(self, error: HarnessError) -> None:
        self.console.print(f"[bold red]error:[/bold red] {escape(str(error))}", soft_wrap=True)
        self.console.print("[dim]Watching; fix the file and save it again.[/dim]")

    def loop(self) -> None:
        config = self.load()
        before = snapshot(watched_paths(config))
        self.rerun()
        try:
            while not self.stop_event.is_set():
                # The watch starts anew after each rerun, so that a file an editor replaced
                # by renaming is watched again under its name.
                paths = watched_paths(config)
                changed = self._wait_for_changes(paths, before)
                if not changed:
                    continue
                before = snapshot(paths)
                names = sorted({Path(path).name for path in changed})
                self.console.print(f"[bold]changed:[/bold] {', '.join(names)}")
                self.rerun(changed)
                try:
                    config = self.load()
                except HarnessError:
                    pass
        finally:
            self.close()

    def _wait_for_changes(self, paths: list[Path], before: dict[str, int]) -> list[str]:
        """Return the files saved since the snapshot `before`, once there are any.

        A save made before the new watch starts (during the last rerun, or while the watch
        sets up) raises no event, so the files are also compared with `before` at once and
        at each timeout of the watch. Returns [] when the loop is stopped.
        """
        missed = changed_files(before, snapshot(paths))
        if missed:
            return missed
        for changes in watchfiles.watch(
            *paths,
            watch_filter=_relevant,
            debounce=DEBOUNCE_MS,
            step=50,
            stop_event=self.stop_event,
            rust_timeout=500,
            yield_on_timeout=True,
        ):
            if changes:
                return sorted({path for _, path in changes})
            missed = changed_files(before, snapshot(paths))
            if missed:
                return missed
        return []

    def close(self) -> None:
        if self.launcher is not None:
            self.launcher.close()
        if self.aws is not None:
            self.aws.stop()
            self.aws = None

"""`harness watch` on a copy of the project: a saved edit reruns and prints new metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.project import copy_project, default_sigint

pytestmark = pytest.mark.slow


class Output:
    """Collects a process's output lines from a reader thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(text in line for line in self.lines) >= count:
                return
            time.sleep(0.2)
        raise AssertionError(
            f"{text!r} not printed {count} times in {timeout} s:\n" + "\n".join(self.lines[-40:])
        )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the repository's configuration, steps and fixtures that a test may edit."""
    return copy_project(tmp_path)


@pytest.mark.parametrize("mode", ["--cold", "--warm"])
def test_edit_reruns_and_prints_metrics(project: Path, mode: str) -> None:
    # The edits below reach evaluate, so the steps after it would only lengthen every run.
    command = [
        *[sys.executable, "-m", "harness.cli", "watch", "--quiet", "--no-local"],
        *["--set", "pipeline.steps=prepare, train, predict, evaluate"],
    ]
    if mode == "--cold":
        command.append("--cold")
    watch = subprocess.Popen(
        command,
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=default_sigint,
    )
    output = Output(watch)
    try:
        output.wait_for("first run took", 1, timeout=400)

        # MAP and MRR count labels at or above the threshold as relevant: raising it moves them.
        fixtures = project / "fixtures" / "fixtures.ini"
        fixtures.write_text(
            fixtures.read_text() + "\n[evaluate.arguments]\nrelevance-threshold = 3\n"
        )
        output.wait_for("run took", 2, timeout=300)

        # A broken edit is reported (here by the contract checks, which run the script's
        # --help) and the loop keeps watching; saving the fix recovers.
        evaluate = project / "steps" / "evaluate" / "evaluate.py"
        original = evaluate.read_text()
        evaluate.write_text("raise RuntimeError('broken on purpose')\n" + original)
        output.wait_for("broken on purpose", 1, timeout=120)
        evaluate.write_text(original)
        output.wait_for("run took", 3, timeout=300)
    finally:
        watch.send_signal(signal.SIGINT)
        try:
            code = watch.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Its workers end with it, so no process of this test outlives it.
            watch.kill()
            raise

    assert code == 130
    text = "\n".join(output.lines)
    assert "changed: fixtures.ini" in text
    assert "changed: evaluate.py" in text
    assert "Watching; fix the file and save it again." in text

    runs = sorted((project / ".harness" / "fixtures" / "runs").glob("*.json"))
    records = [json.loads(path.read_text()) for path in runs]
    assert len(records) == 3
    first, second, third = records
    cached = {step["step"]: step["cached"] for step in second["steps"]}
    assert cached["prepare"] is True
    assert cached["train"] is True
    assert cached["evaluate"] is False
    before = first["evaluation"]["ranking_metrics"]["map"]["value"]
    after = second["evaluation"]["ranking_metrics"]["map"]["value"]
    assert after != before
    assert "│ test map" in text
    # The restored file is the second run's code again, so evaluate comes from the cache.
    assert {step["step"]: step["cached"] for step in third["steps"]}["evaluate"] is True


def test_save_during_rerun_reruns(project: Path) -> None:
    """A file saved while a rerun runs, before the next watch starts, makes another rerun."""
    from rich.console import Console

    from harness.config import load_config
    from harness.local.pipeline import RunRecord
    from harness.watch import Watcher

    config = load_config(
        project / "config.ini", [project / "fixtures" / "fixtures.ini"], use_local=False
    )
    evaluate = project / "steps" / "evaluate" / "evaluate.py"
    calls: list[int] = []

    def run(config, aws, launcher) -> RunRecord:  # type: ignore[no-untyped-def]
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            # The save lands while the first run is still running.
            evaluate.write_text(evaluate.read_text() + "\n# saved during the run\n")
        else:
            watcher.stop_event.set()
        return RunRecord(f"2026120500000{len(calls)}", "ltr-ranking", "2026-12-05")

    watcher = Watcher(Console(quiet=True), lambda: config, run)
    # Without a second run, the loop waits for a save that never comes: end it after 60 s.
    timer = threading.Timer(60, watcher.stop_event.set)
    timer.start()
    try:
        watcher.loop()
    finally:
        timer.cancel()
    assert calls == [1, 2]

"""A cold job's process group: how a stopped or timed-out process is reported."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

from harness.local.jobs import _ProcessGroup

# Exits 0 on SIGTERM, as horovodrun can: its SIGTERM handler shuts its ranks down and returns.
CATCHES_SIGTERM = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("sleeping", flush=True)
time.sleep(120)
"""


def start_sleeper(group: _ProcessGroup, tmp_path: Path, lines: list[str]) -> threading.Event:
    sleeping = threading.Event()

    def sink(host: str, line: str) -> None:
        lines.append(line)
        if line == "sleeping":
            sleeping.set()

    group.start(
        [sys.executable, "-c", CATCHES_SIGTERM],
        dict(os.environ),
        tmp_path,
        "algo-1",
        io.StringIO(),
        threading.Lock(),
        sink,
        [],
        {},
    )
    return sleeping


def test_stopped_zero_exit_reports_sigterm(tmp_path: Path) -> None:
    group, lines = _ProcessGroup(), []
    sleeping = start_sleeper(group, tmp_path, lines)
    stop = threading.Event()
    threading.Thread(target=lambda: sleeping.wait(60) and stop.set(), daemon=True).start()

    codes, timed_out = group.wait(time.monotonic() + 120, stop)

    assert codes == [-signal.SIGTERM]
    assert not timed_out
    assert lines == ["sleeping"]


def test_timed_out_zero_exit_reports_sigterm(tmp_path: Path) -> None:
    group, lines = _ProcessGroup(), []
    sleeping = start_sleeper(group, tmp_path, lines)
    assert sleeping.wait(60)

    codes, timed_out = group.wait(time.monotonic() + 0.5)

    assert codes == [-signal.SIGTERM]
    assert timed_out

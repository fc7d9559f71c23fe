"""Keep job processes from outliving harness.

Each job's processes run in their own session (process group), so that ending a job ends
everything it started. Two more guards cover a harness process that dies without cleaning
up (SIGKILL, a crash):
- on Linux each job process gets `PR_SET_PDEATHSIG`, so the kernel sends it SIGKILL when
  harness dies;
- every job writes its process group ids to `processes.json` in its job folder, and the
  next run ends any group that is still alive before it starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import signal
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
PROCESSES_FILE = "processes.json"


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux only).

    NOTE: macOS has no equivalent; there, only the sweep at the next run's start ends
    processes that a killed harness left behind.
    """
    if not sys.platform.startswith("linux"):
        return
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def start_time(pid: int) -> str | None:
    """Return the process's start time in clock ticks since boot, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces, so split after its closing bracket.
    return stat.rsplit(")", 1)[1].split()[19]


def record_processes(job_dir: Path, pids: list[int]) -> None:
    entries = [{"pid": pid, "start_time": start_time(pid)} for pid in pids]
    (job_dir / PROCESSES_FILE).write_text(json.dumps(entries))


def forget_processes(job_dir: Path) -> None:
    (job_dir / PROCESSES_FILE).unlink(missing_ok=True)


def end_orphans(workspace: Path) -> int:
    """End the process groups that an interrupted run left; return how many were ended."""
    ended = 0
    for record in sorted((workspace / "jobs").glob(f"*/{PROCESSES_FILE}")):
        try:
            entries = json.loads(record.read_text())
        except (OSError, ValueError):
            entries = []
        for entry in entries:
            pid = int(entry["pid"])
            # A matching start time proves the pid was not reused by another program.
            if entry.get("start_time") and start_time(pid) == entry["start_time"]:
                try:
                    os.killpg(pid, signal.SIGKILL)
                    ended += 1
                    logger.warning("ended process group %d left by %s", pid, record.parent.name)
                except ProcessLookupError:
                    pass
        record.unlink(missing_ok=True)
    return ended

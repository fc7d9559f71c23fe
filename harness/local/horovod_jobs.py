"""Data-parallel training jobs on one machine: Horovod ranks started by horovodrun over Gloo.

A CreateTrainingJob request is distributed when its hyperparameters enable MPI
(`sagemaker_mpi_enabled`), as the SageMaker Python SDK sets them for
`distribution={"mpi": ...}` (SDK v2) and `ModelTrainer(distributed=MPI(...))` (SDK v3). The
job then has `InstanceCount * sagemaker_mpi_num_of_processes_per_host` ranks. Locally they run
as `horovodrun -np N -H localhost:N` with Gloo on 127.0.0.1, so neither MPI nor ssh is
needed. Rank r plays host `algo-(r // processes_per_host + 1)`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.local.processes import start_time

MPI_ENABLED = "sagemaker_mpi_enabled"
MPI_PROCESSES_PER_HOST = "sagemaker_mpi_num_of_processes_per_host"
MPI_CUSTOM_OPTIONS = "sagemaker_mpi_custom_mpi_options"

HOROVOD_VERSION = "0.28.1"
# Horovod's bundled Gloo does not configure with CMake 4, so CMake 3 comes first.
INSTALL_COMMAND = (
    "pip install setuptools wheel 'cmake>=3.13,<4' && HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 "
    f"HOROVOD_WITH_GLOO=1 pip install --no-build-isolation 'horovod=={HOROVOD_VERSION}'"
)

RANK_SCRIPT = Path(__file__).with_name("horovod_rank.py")

# horovodrun (Gloo) prefixes every line of rank r with "[r]<stdout>:" or "[r]<stderr>:".
_RANK_PREFIX = re.compile(r"^\[(\d+)\]<(?:stdout|stderr)>:")
# Horovod 0.28's error on the other ranks after one rank fails or exits.
HOROVOD_SHUTDOWN = "Horovod has been shut down"
# The sagemaker-training toolkit's failure reason when the entry point wrote none.
TOOLKIT_NO_MESSAGE = 'ErrorMessage ""'


def mpi_settings(hyperparameters: dict[str, Any]) -> tuple[bool, int]:
    """Return whether `hyperparameters` enable MPI, and the processes per host (1 if unset)."""
    enabled = str(hyperparameters.get(MPI_ENABLED, "")).lower() == "true"
    processes_per_host = int(hyperparameters.get(MPI_PROCESSES_PER_HOST, 1) or 1)
    return enabled, processes_per_host


def rank_count(request: dict[str, Any]) -> int:
    """Return the number of Horovod ranks of a CreateTrainingJob request; 1 without MPI.

    Takes a tuning job's TrainingJobDefinition too, which has StaticHyperParameters instead.
    """
    hyperparameters = request.get("HyperParameters") or request.get("StaticHyperParameters", {})
    enabled, processes_per_host = mpi_settings(hyperparameters)
    if not enabled:
        return 1
    return int(request["ResourceConfig"]["InstanceCount"]) * processes_per_host


def missing_horovod() -> str | None:
    """Return why Horovod cannot run TensorFlow ranks in this Python, or None when it can.

    Reads the installed distribution's file list and imports nothing, so it is fast and
    keeps TensorFlow out of the harness process.
    """
    try:
        distribution = importlib.metadata.distribution("horovod")
    except importlib.metadata.PackageNotFoundError:
        return f"the package horovod is not installed in {sys.executable}"
    files = [str(path) for path in distribution.files or []]
    if not any(re.match(r"horovod/tensorflow/mpi_lib.*\.so$", name) for name in files):
        return (
            f"horovod {distribution.version} is installed without TensorFlow support "
            "(no horovod/tensorflow/mpi_lib)"
        )
    return None


def require_horovod(job_name: str, ranks: int, source: str) -> None:
    """Raise HarnessError with the install command when Horovod cannot run `job_name`."""
    problem = missing_horovod()
    if problem is None:
        return
    raise HarnessError(
        f"{source}: the job {job_name} trains on {ranks} Horovod ranks, but {problem}. "
        f"Fix: install Horovod into this environment with `{INSTALL_COMMAND}` (the README's "
        "section on distributed training has the same commands for a clone), or set "
        "[train] instance_count = 1 and processes_per_host = 1."
    )


def horovodrun_command(job_dir: Path, hosts: list[str], processes_per_host: int) -> list[str]:
    """Return the horovodrun command line that starts every rank of a job on 127.0.0.1.

    NOTE: `sagemaker_mpi_custom_mpi_options` are mpirun options, which horovodrun over Gloo
    does not take, so the local target does not use them.
    """
    ranks = len(hosts) * processes_per_host
    # `python -m horovod.runner.launch` is horovodrun, run with this Python whatever PATH is.
    return [
        sys.executable,
        "-m",
        "horovod.runner.launch",
        "--gloo",
        # Gloo talks only over the loopback interface.
        "--network-interface",
        "lo0" if sys.platform == "darwin" else "lo",
        "-np",
        str(ranks),
        "-H",
        f"localhost:{ranks}",
        # -P keeps the script's folder off sys.path, where its modules would shadow others.
        sys.executable,
        "-P",
        str(RANK_SCRIPT),
        str(job_dir),
        str(processes_per_host),
        *hosts,
    ]


def split_rank_line(line: str, hosts: list[str], processes_per_host: int) -> tuple[str, str]:
    """Return (host, text) of a horovodrun output line; horovodrun's own lines go to hosts[0]."""
    match = _RANK_PREFIX.match(line)
    if match is None:
        return hosts[0], line
    rank = int(match.group(1))
    host_index = min(rank // processes_per_host, len(hosts) - 1)
    return hosts[host_index], line[match.end() :]


def first_rank_failure(job_dir: Path) -> str:
    """Return the failure reason of the rank that caused the job to fail, prefixed with its
    rank and host. Returns "" when no rank recorded a failure, as a rank killed by a signal
    records none.

    When one rank fails, Horovod shuts down on the others, and their errors report only that
    ("Horovod has been shut down"). The rank that caused it may even finish failing later. So
    the earliest failure is taken whose reason is neither that nor the toolkit's reason
    without a message. When every reason is such, the earliest failure of all is taken.
    """
    records = []
    for path in sorted((job_dir / "ranks").glob("rank-*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    if not records:
        return ""
    records.sort(key=lambda record: record["time"])
    causes = [record for record in records if not _is_consequence(record["reason"])]
    first = (causes or records)[0]
    reason = first["reason"].strip() or f"the entry point exited with code {first['exit_code']}"
    return f"rank {first['rank']} on {first['host']}: {reason}"


def _is_consequence(reason: str) -> bool:
    return HOROVOD_SHUTDOWN in reason or not reason.strip() or TOOLKIT_NO_MESSAGE in reason


def end_rank_groups(job_dir: Path, grace_seconds: float = 5.0) -> None:
    """Wait up to `grace_seconds` for each rank's process group to end, then SIGKILL it.

    Each rank runs in a process group of its own. When horovodrun itself is terminated (a
    stopped or timed-out job), its helper processes send the ranks SIGTERM shortly after,
    and this makes sure that no rank outlives the job.
    """
    groups = []
    for path in sorted((job_dir / "ranks").glob("group-*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        leader_start = start_time(record["pgid"])
        # A live leader with another start time is a new process that reuses the id.
        if leader_start is None or leader_start == record["start_time"]:
            groups.append(record["pgid"])
    deadline = time.monotonic() + grace_seconds
    for group in groups:
        # Linux reuses no process id while a process group of that id has members.
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(group):
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

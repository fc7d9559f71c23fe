"""Run one Horovod rank of a local training job through the sagemaker-training toolkit.

`horovodrun` starts this script once per rank, by file path and without the harness package,
as `python horovod_rank.py JOB_DIR PROCESSES_PER_HOST HOST...`. Rank r belongs to host
`HOST[r // PROCESSES_PER_HOST]`: the script points `SAGEMAKER_BASE_DIR` at that host's
`/opt/ml` folder, so the rank sees the host's resourceconfig.json, SM_HOSTS and
SM_CURRENT_HOST, then runs the toolkit's training entry point.

The toolkit would start `mpirun` itself when the hyperparameters enable MPI. Here horovodrun
has already started every rank, so the toolkit runs the entry point as one plain process.

When the toolkit fails, the rank writes `JOB_DIR/ranks/rank-<r>.json` with the failure reason
and the time, so that harness can report the rank that failed first.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def record_failure(job_dir: Path, rank: int, host: str, root: Path, exit_code: int) -> None:
    # NOTE: ranks of one host share its /opt/ml/output/failure, and the toolkit writes it only
    # when it is absent. So with processes_per_host above 1, a rank may record the reason of
    # another rank of its host.
    failure_file = root / "output" / "failure"
    reason = failure_file.read_text(errors="replace") if failure_file.exists() else ""
    record = {
        "rank": rank,
        "host": host,
        "exit_code": exit_code,
        "time": time.time(),
        "reason": reason,
    }
    (job_dir / "ranks" / f"rank-{rank}.json").write_text(json.dumps(record))


def end_descendants_and_exit(signum: int, frame: object) -> None:
    """End this rank's processes (the entry point the toolkit started), then exit.

    horovodrun ends a rank with SIGTERM to this process alone, so without this handler the
    entry point would outlive the job.
    """
    import psutil  # a dependency of horovod

    descendants = psutil.Process().children(recursive=True)
    for process in descendants:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(descendants, timeout=3)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    os._exit(128 + signum)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, end_descendants_and_exit)
    # A process group of its own lets harness end whatever of this rank is left after the job.
    os.setpgid(0, 0)
    job_dir, processes_per_host, hosts = Path(argv[0]), int(argv[1]), argv[2:]
    rank = int(os.environ["HOROVOD_RANK"])
    host = hosts[rank // processes_per_host]
    root = job_dir / host / "opt" / "ml"
    ranks_dir = job_dir / "ranks"
    ranks_dir.mkdir(exist_ok=True)
    try:
        stat = Path(f"/proc/{os.getpid()}/stat").read_text()
        started = stat.rsplit(")", 1)[1].split()[19]  # clock ticks since boot
    except OSError:  # no /proc outside Linux
        started = None
    group = {"pgid": os.getpgrp(), "start_time": started}
    (ranks_dir / f"group-{rank}.json").write_text(json.dumps(group))
    # The toolkit reads SAGEMAKER_BASE_DIR when it is imported.
    os.environ["SAGEMAKER_BASE_DIR"] = str(root)
    os.chdir(root)

    from sagemaker_training import entry_point, runner, trainer

    run_entry_point = entry_point.run

    def run_as_one_process(*args, **kwargs):
        kwargs["runner_type"] = runner.RunnerType.Process
        return run_entry_point(*args, **kwargs)

    entry_point.run = run_as_one_process

    try:
        trainer.train()
        exit_code = 0
    except SystemExit as exit:
        exit_code = exit.code if isinstance(exit.code, int) else 1
    if exit_code != 0:
        record_failure(job_dir, rank, host, root, exit_code)
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Record the runs that are waiting in `<workspace>/mlflow/pending/` in MLflow.

A run leaves its MLflow record there when it ends (RunTracker.finish) and starts this module
as a detached process, so that the run's command returns without waiting for MLflow:

    python -m harness.tracking.flush <workspace>

One writer at a time locks `<workspace>/mlflow/flush.lock`. It records every pending run,
oldest first, and deletes each file once its run is recorded. A file it cannot record moves to
`pending/failed/` with the reason in `flush.log`, so one bad record never blocks the others.
`harness runs` and `harness ui` call flush_pending() first, which waits for a running writer
and then records whatever is left.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# How long `harness runs` waits for a writer that holds the lock.
WAIT_SECONDS = 300.0


def pending_folder(workspace: Path) -> Path:
    return workspace / "mlflow" / "pending"


def start_writer(workspace: Path) -> None:
    """Start a detached writer of the workspace's pending runs; return at once."""
    log = (workspace / "mlflow" / "flush.log").open("a")
    with log:
        subprocess.Popen(
            [sys.executable, "-m", "harness.tracking.flush", str(workspace)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"},
        )


def flush_pending(workspace: Path, wait_seconds: float = WAIT_SECONDS) -> int:
    """Record every pending run of `workspace`, after any running writer; return how many.

    Raises TimeoutError when another writer holds the lock for longer than `wait_seconds`.
    """
    folder = pending_folder(workspace)
    if not folder.is_dir():
        return 0
    lock_path = workspace / "mlflow" / "flush.lock"
    with lock_path.open("a") as lock:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another process is recording runs in {folder}") from None
                time.sleep(0.2)
        try:
            return _record_all(workspace, folder)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _record_all(workspace: Path, folder: Path) -> int:
    from harness.tracking.recorder import open_client, record_pending
    from harness.tracking.settings import TrackingSettings

    recorded = 0
    # Opening the store checks its schema, which is slow, so each store is opened once.
    clients: dict[TrackingSettings, tuple[Any, str]] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            payload = json.loads(path.read_text())
            settings = TrackingSettings(**payload["settings"])
            if settings not in clients:
                clients[settings] = open_client(settings)
            client, experiment_id = clients[settings]
            record_pending(client, experiment_id, payload)
        except Exception as error:  # noqa: BLE001 - one bad record must not block the others
            logger.warning("cannot record %s in MLflow: %s", path.name, error)
            failed = folder / "failed"
            failed.mkdir(exist_ok=True)
            path.replace(failed / path.name)
            continue
        path.unlink()
        recorded += 1
    return recorded


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    flush_pending(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

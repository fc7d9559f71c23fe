"""The parts of the SageMaker job contract that every step uses.

Paths live under `/opt/ml` in a SageMaker container. harness runs a step locally with
`SAGEMAKER_BASE_DIR` set to the job's `opt/ml` folder, and `opt_ml` follows it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

# SageMaker reads at most 1024 characters of FailureReason and ExitMessage.
MAX_FAILURE_CHARS = 1024
DEFAULT_HOST = "algo-1"

log = logging.getLogger(__name__)


class StepError(Exception):
    """An expected failure, such as invalid input data or arguments.

    `run_step` writes its message as the failure reason without a traceback, so the
    message must say what failed, on which value, and what to do next.
    """


class ArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` that raises StepError for invalid arguments.

    The standard parser exits with status 2 and writes nothing that SageMaker shows, so a
    typo in an argument would leave the job without a failure reason.
    """

    def error(self, message: str) -> NoReturn:
        raise StepError(f"invalid arguments for {self.prog}: {message}")


def opt_ml(*parts: str) -> str:
    """Return a path under the job's `/opt/ml`, or under `SAGEMAKER_BASE_DIR` when it is set."""
    base = os.environ.get("SAGEMAKER_BASE_DIR") or "/opt/ml"
    return os.path.join(base, *parts)


def resource_config() -> dict:
    """Return `{"current_host": ..., "hosts": [...]}` for this job instance.

    Processing jobs find the file at `/opt/ml/config/resourceconfig.json` and training jobs
    at `/opt/ml/input/config/resourceconfig.json`. Without either file the job is taken to
    run on one instance named algo-1, as a local run without harness does.
    """
    for path in (
        opt_ml("config", "resourceconfig.json"),
        opt_ml("input", "config", "resourceconfig.json"),
    ):
        if not os.path.exists(path):
            continue
        try:
            with open(path, encoding="utf-8") as file:
                config = json.load(file)
        except (OSError, json.JSONDecodeError) as error:
            raise StepError(f"failed to read the resource config {path}: {error}") from error
        current_host = config.get("current_host") or DEFAULT_HOST
        hosts = list(config.get("hosts") or [current_host])
        return {"current_host": current_host, "hosts": hosts}
    return {"current_host": DEFAULT_HOST, "hosts": [DEFAULT_HOST]}


def configure_logging(step_name: str) -> None:
    """Send `logging` records to stderr, each line tagged with the step name."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s {step_name} %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # py4j, PySpark's bridge to the JVM, logs every connection at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)


def write_failure_reason(reason: str) -> None:
    """Write the first 1024 characters of `reason` where SageMaker reads a failed job's reason.

    Training jobs report `/opt/ml/output/failure` as FailureReason and processing jobs
    report `/opt/ml/output/message` as ExitMessage. A step does not know which kind of job
    runs it, so both files are written.
    """
    text = reason[:MAX_FAILURE_CHARS]
    for path in (opt_ml("output", "failure"), opt_ml("output", "message")):
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)
        except OSError as error:
            print(f"failed to write the failure reason to {path}: {error}", file=sys.stderr)


def fail(message: str) -> NoReturn:
    """Log `message`, write it as the job's failure reason and exit with status 1."""
    log.error("%s", message)
    write_failure_reason(message)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(1)


def run_step(main: Callable[[], object]) -> None:
    """Call `main()` and turn any exception into a failure reason and exit status 1.

    A StepError becomes the failure reason as it is, with no traceback. Any other
    exception prints its traceback to stderr and becomes `ExceptionType: message`.
    """
    try:
        main()
    except StepError as error:
        fail(str(error))
    except Exception as error:  # noqa: BLE001 - every unexpected error must reach SageMaker
        traceback.print_exc(file=sys.stderr)
        fail(f"{type(error).__name__}: {error}")
    sys.stdout.flush()
    sys.stderr.flush()

"""Warm worker processes that run job entry points without paying the start-up cost again.

`harness watch` reruns steps when files are saved. A cold run spends seconds before the step
does anything, importing TensorFlow or starting a Spark JVM. A WarmPool keeps worker processes
that have paid that cost once:

* training: a zygote that has imported TensorFlow, Keras, NumPy, pandas, PyArrow and the
  sagemaker-training toolkit. Each job is a child forked from it that runs the toolkit's
  `trainer.train()` with the user script executed in the same process, so the arguments,
  `SM_*` variables, success and failure files and exit code are those of
  `python -m sagemaker_training.cli.train`.
* python: a zygote with the same libraries except the toolkit, for processing jobs that run
  TensorFlow. Each job is a forked child that runs `python <script> <args>` in-process.
* spark: a process that keeps a SparkSession and its JVM. It runs one job at a time in-process,
  each with its own session from `newSession()` on the same SparkContext, and restores its
  environment, working directory, modules and Spark state after each job.

A forked child is a new process, so nothing a job changes reaches the next job. The spark
worker is reused in-process, and what it cannot reset is listed in `_SparkJobHost`.

The harness talks to a worker over a Unix socket pair that carries JSON lines. A job's output
reaches `on_line` line by line, stdout and stderr merged as `jobs.py` reads a cold process.
A forked child writes to a pipe that the harness sends along with the request. The spark
worker writes to its own stdout, where a marker line ends each job's output.

Workers start on first use, from one long-lived thread of the pool, and end with `close()`,
at interpreter exit, or when the harness process dies (see `_exit_with_parent`).
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import ctypes
import errno
import importlib
import importlib.machinery
import io
import json
import linecache
import logging
import os
import queue
import random
import runpy
import select
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import warnings
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("training", "spark", "python")
_FORKING_KINDS = ("training", "python")

# The command that `jobs.run_training_job` runs, after the interpreter.
TRAINING_COMMAND = ("-m", "sagemaker_training.cli.train")

# Modules that each worker imports once, so that jobs find them loaded.
_WORKER_IMPORTS = {
    "training": (
        "numpy",
        "pandas",
        "pyarrow",
        "tensorflow",
        "keras",
        "sagemaker_training.trainer",
        "sagemaker_training.cli.train",
    ),
    "python": ("numpy", "pandas", "pyarrow", "tensorflow", "keras"),
    "spark": (
        "numpy",
        "pandas",
        "pyarrow",
        "pyspark.sql",
        "pyspark.sql.functions",
        "pyspark.sql.types",
        "pyspark.sql.window",
    ),
}

# Generous, because a cold import of TensorFlow or a JVM start on a loaded machine can take
# many times its usual few seconds.
WORKER_START_TIMEOUT_SECONDS = 300.0
# Time between SIGTERM and SIGKILL when a job is ended, as `jobs._ProcessGroup.terminate` uses.
STOP_GRACE_SECONDS = 5.0
# How often a waiting job looks at a stop event set from outside the pool.
STOP_POLL_SECONDS = 0.1
# How long the harness waits for the rest of a job's output after the job has exited.
OUTPUT_DRAIN_SECONDS = 10.0
# Output lines of a worker kept for the error message when it fails to start.
RECENT_LINE_COUNT = 40

# Environment variables that Python, TensorFlow or the JVM read once at start-up. A worker
# started with other values cannot stand in for a cold process, so the pool starts another.
_STARTUP_VARIABLE_PREFIXES = (
    "PYTHON",
    "TF_",
    "OMP_",
    "KMP_",
    "MKL_",
    "CUDA_",
    "XLA_",
    "KERAS_",
    "LD_",
    "JAVA",
    "_JAVA_",
    "JDK_",
    "SPARK_",
    "PYSPARK_",
    "HADOOP_",
)
_STARTUP_VARIABLES = frozenset({"PATH", "LANG", "LC_ALL", "LC_CTYPE"})
# TF_CONFIG is read when a tf.distribute strategy is created, not at import.
_RUNTIME_VARIABLES = frozenset({"TF_CONFIG"})

# Ends a spark job's output on the worker's stdout: marker, job id, NUL, newline.
_END_MARK = "\x00harness-warm-job-end:"

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_SPARK_DEFAULT_LOG_LEVEL = "WARN"


# ---------------------------------------------------------------------------------------------
# Harness side
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarmJobResult:
    """Exit status of a warm job, and whether the harness ended it."""

    code: int
    """Exit status as `subprocess.Popen.returncode` gives it: negative for a signal."""
    timed_out: bool = False
    stopped: bool = False


class _WorkerGone(Exception):
    """The worker ended before it accepted the job, so the job can run on a new worker."""


class _Job:
    """One call of `WarmPool.run_job`: its output callback and the messages for it."""

    def __init__(
        self,
        job_id: int,
        on_line: Callable[[str], None],
        log: logging.Logger,
        stop: threading.Event | None = None,
    ) -> None:
        self.id = job_id
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stop_requested = stop if stop is not None else threading.Event()
        self.output_done = threading.Event()
        self._on_line = on_line
        self._log = log
        self._detached = False
        self._callback_failed = False

    def emit(self, line: str) -> None:
        if self._detached:
            self._log.debug("warm job %d printed after it ended: %s", self.id, line)
            return
        try:
            self._on_line(line)
        except Exception:
            if not self._callback_failed:
                self._callback_failed = True
                self._log.exception(
                    "on_line failed for warm job %d, and its later failures are not logged",
                    self.id,
                )

    def detach(self) -> None:
        """Stop passing output to `on_line`, once `run_job` has returned."""
        self._detached = True

    def request_stop(self) -> None:
        self.stop_requested.set()
        self.messages.put({"op": "stop"})


class _Worker:
    """The harness's handle on one worker process."""

    def __init__(
        self, kind: str, interpreter: str, startup_key: tuple, log: logging.Logger
    ) -> None:
        self.kind = kind
        self.interpreter = interpreter
        self.startup_key = startup_key
        self.proc: subprocess.Popen[bytes] | None = None
        self.alive = False
        self.active_jobs = 0  # changed only under WarmPool._lock
        # Set when a newer worker replaces this one, which is closed after its last job.
        self.retired = False
        self.closing = False
        self.ready = False
        self.start_env: dict[str, str] | None = None
        self.recent_lines: deque[str] = deque(maxlen=RECENT_LINE_COUNT)
        self._log = log
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._start_error: BaseException | None = None
        self._jobs: dict[int, _Job] = {}
        self._jobs_lock = threading.Lock()
        # Control messages without a job id: "ready", or "eof" when the worker has gone.
        self._worker_messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        # The job that receives the worker's own stdout. Only a spark worker sets it.
        self._output_job: _Job | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def usable(self) -> bool:
        """Whether a job may use this worker: it runs, or it is starting or about to."""
        if self.closing or self._start_error is not None:
            return False
        return self.proc is None or self.alive

    def describe(self) -> str:
        return f"warm {self.kind} worker (pid {self.pid})"

    # -- start and stop -----------------------------------------------------------------------

    def ensure_started(
        self,
        env: dict[str, str],
        workdir: Path,
        spawn: Callable[..., subprocess.Popen[bytes]],
        warm_up: bool = False,
    ) -> None:
        """Start the worker unless a caller already has. Raises RuntimeError when it fails.

        With `warm_up`, a spark worker runs a query before it reports ready, which makes its
        first job seconds faster but its start as much slower. Only a start that no job
        waits for should ask for it.
        """
        with self._start_lock:
            if self._start_error is not None:
                raise self._start_error
            if self.closing:
                raise _WorkerGone(f"the warm {self.kind} worker was closed before it started")
            if self.proc is None:
                self.start_env = dict(env)
                try:
                    self._start(env, workdir, spawn, warm_up)
                except BaseException as error:
                    self._start_error = error
                    raise

    def _start(
        self,
        env: dict[str, str],
        workdir: Path,
        spawn: Callable[..., subprocess.Popen[bytes]],
        warm_up: bool,
    ) -> None:
        parent_end, child_end = socket.socketpair()
        bootstrap = _BOOTSTRAP.format(root=str(Path(__file__).resolve().parents[2]))
        command = [
            self.interpreter,
            "-c",
            bootstrap,
            self.kind,
            str(child_end.fileno()),
            str(os.getpid()),
            "warm-up" if warm_up else "no-warm-up",
        ]
        started = time.monotonic()
        try:
            proc = spawn(
                command,
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(child_end.fileno(),),
                start_new_session=True,
            )
        except OSError as error:
            parent_end.close()
            raise RuntimeError(
                f"failed to start the warm {self.kind} worker with {self.interpreter}: {error}"
            ) from error
        finally:
            child_end.close()
        self._sock = parent_end
        # alive before proc, so that `usable` never reads a started process that is not alive.
        self.alive = True
        self.proc = proc
        if self.closing:
            self.kill()
            raise _WorkerGone(f"the {self.describe()} was closed while it started")
        for target, name in ((self._pump_output, "output"), (self._dispatch, "control")):
            thread = threading.Thread(
                target=target, name=f"warm-{self.kind}-{self.proc.pid}-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

        try:
            message = self._worker_messages.get(timeout=WORKER_START_TIMEOUT_SECONDS)
        except queue.Empty:
            message = {"op": "timeout"}
        except BaseException:
            self.kill()
            raise
        if message["op"] != "ready":
            self.kill()
            if message["op"] == "timeout":
                reason = f"did not report ready within {WORKER_START_TIMEOUT_SECONDS:.0f} s"
            else:
                reason = f"exited with code {self.proc.returncode}"
            lines = "\n".join(self.recent_lines) or "(no output)"
            raise RuntimeError(
                f"The warm {self.kind} worker failed to start: it {reason}. "
                f"Its last output lines:\n{lines}"
            )
        self.ready = True
        self._log.info("Started the %s in %.1f s", self.describe(), time.monotonic() - started)

    def close(self) -> None:
        """Ask the worker to exit, then end its process group, also while it is starting."""
        self.closing = True
        if self.proc is not None and not self.ready:
            self.kill()  # ends the wait in _start at once
        with self._start_lock:
            self._close()

    def _close(self) -> None:
        if self.proc is None:
            return
        if self.alive:
            try:
                self.send({"op": "exit"})
                self.proc.wait(timeout=STOP_GRACE_SECONDS)
            except (_WorkerGone, subprocess.TimeoutExpired):
                pass
        self.kill()

    def kill(self) -> None:
        """End the worker's process group and the job process groups it reported, at once."""
        if self.proc is None:
            return
        for pgid in self._child_process_groups():
            _signal_group(pgid, signal.SIGKILL)
        _signal_group(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self._log.error("The %s did not exit after SIGKILL", self.describe())
        self._shut_down_channels()

    def terminate(self) -> None:
        """Send SIGTERM to the worker's process group, then SIGKILL after the grace period."""
        if self.proc is None:
            return
        _signal_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def _child_process_groups(self) -> list[int]:
        return []

    def _shut_down_channels(self) -> None:
        self.alive = False
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=OUTPUT_DRAIN_SECONDS)
        if self._sock is not None:
            self._sock.close()

    # -- messages -----------------------------------------------------------------------------

    def send(self, message: dict[str, Any], fd: int | None = None) -> None:
        """Send one JSON line, with `fd` attached when given. Raises _WorkerGone on failure."""
        data = (json.dumps(message) + "\n").encode()
        if self._sock is None:
            raise _WorkerGone(f"the {self.describe()} has not started")
        with self._send_lock:
            try:
                if fd is None:
                    self._sock.sendall(data)
                else:
                    sent = socket.send_fds(self._sock, [data], [fd])
                    if sent < len(data):
                        self._sock.sendall(data[sent:])
            except OSError as error:
                raise _WorkerGone(f"the {self.describe()} is gone: {error}") from error

    def register(self, job: _Job) -> None:
        with self._jobs_lock:
            self._jobs[job.id] = job

    def unregister(self, job: _Job) -> None:
        with self._jobs_lock:
            self._jobs.pop(job.id, None)

    def _dispatch(self) -> None:
        """Route each control message to its job. At EOF, tell every job the worker is gone."""
        assert self._sock is not None
        try:
            with self._sock.makefile("rb") as reader:
                for raw in reader:
                    message = json.loads(raw)
                    job_id = message.get("id")
                    if job_id is None:
                        self._worker_messages.put(message)
                        continue
                    with self._jobs_lock:
                        job = self._jobs.get(job_id)
                    if job is not None:
                        job.messages.put(message)
        except (OSError, ValueError) as error:
            self._log.debug("The control channel of the %s failed: %s", self.describe(), error)
        finally:
            self.alive = False
            self._worker_messages.put({"op": "eof"})
            with self._jobs_lock:
                jobs = list(self._jobs.values())
            for job in jobs:
                job.messages.put({"op": "eof"})

    def _pump_output(self) -> None:
        """Pass the worker's output lines to the current job and keep the recent ones."""
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self._route_line(raw.decode("utf-8", errors="replace").rstrip("\n"))
        job = self._output_job
        if job is not None:
            job.output_done.set()

    def _route_line(self, line: str) -> None:
        before, mark, after = line.partition(_END_MARK)
        if mark:
            if before:
                self._route_line(before)
            job = self._output_job
            if job is not None and after.rstrip("\x00") == str(job.id):
                job.output_done.set()
            return
        self.recent_lines.append(line)
        job = self._output_job
        if job is not None:
            job.emit(line)
        else:
            self._log.debug("%s: %s", self.describe(), line)

    # -- jobs ---------------------------------------------------------------------------------

    def execute(self, job: _Job, request: dict[str, Any], deadline: float) -> WarmJobResult:
        raise NotImplementedError

    def abort(self, job: _Job) -> None:
        """End the job at once, because the caller was interrupted."""
        raise NotImplementedError


class _ZygoteWorker(_Worker):
    """A worker that forks one child per job (kinds training and python)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._child_pids: dict[int, int] = {}  # job id -> pid of the forked child

    def _child_process_groups(self) -> list[int]:
        return list(self._child_pids.values())

    def execute(self, job: _Job, request: dict[str, Any], deadline: float) -> WarmJobResult:
        read_fd, write_fd = os.pipe()
        reader = threading.Thread(
            target=_pump_pipe, args=(read_fd, job), name=f"warm-job-{job.id}-output", daemon=True
        )
        reader.start()
        try:
            self.send({"op": "run", "id": job.id, **request}, fd=write_fd)
        finally:
            # The zygote has its own copy now, and the pipe ends when the job's processes exit.
            os.close(write_fd)

        try:
            result = self._wait(job, deadline)
            reader.join(timeout=OUTPUT_DRAIN_SECONDS)
            if reader.is_alive():
                self._log.warning(
                    "Warm job %d exited, but a process it started still has its output open. "
                    "Its later output is logged at DEBUG only",
                    job.id,
                )
        finally:
            job.detach()
        return result

    def _wait(self, job: _Job, deadline: float) -> WarmJobResult:
        started = False
        end_reason = ""  # "timeout" or "stop" once the harness ends the job
        signals = [signal.SIGTERM, signal.SIGKILL]
        next_signal_at = deadline
        while True:
            now = time.monotonic()
            if not end_reason and job.stop_requested.is_set():
                end_reason, next_signal_at = "stop", now
            elif not end_reason and now >= deadline:
                end_reason = "timeout"
            if end_reason and now >= next_signal_at:
                if signals:
                    self._signal_job(job, signals.pop(0))
                    next_signal_at = now + STOP_GRACE_SECONDS
                else:
                    # The zygote did not report the child's end: it is stuck, so end both.
                    self._log.error(
                        "The %s did not report the end of job %d", self.describe(), job.id
                    )
                    self.kill()
                    return WarmJobResult(
                        -signal.SIGKILL, end_reason == "timeout", end_reason == "stop"
                    )
            try:
                message = job.messages.get(
                    timeout=min(STOP_POLL_SECONDS, max(0.0, next_signal_at - now))
                )
            except queue.Empty:
                continue
            op = message["op"]
            if op == "started":
                started = True
                self._child_pids[job.id] = int(message["pid"])
            elif op == "exited":
                self._child_pids.pop(job.id, None)
                return WarmJobResult(
                    int(message["code"]), end_reason == "timeout", end_reason == "stop"
                )
            elif op == "eof":
                self._child_pids.pop(job.id, None)
                if not started:
                    raise _WorkerGone(f"the {self.describe()} exited before job {job.id} started")
                # The child got SIGKILL when the zygote died (see _exit_with_parent).
                self._log.error("The %s exited while job %d was running", self.describe(), job.id)
                return WarmJobResult(-signal.SIGKILL, end_reason == "timeout", end_reason == "stop")

    def _signal_job(self, job: _Job, sig: int) -> None:
        # The zygote signals the child only while it has not reaped it, so the pid is never
        # one that the system has reused.
        try:
            self.send({"op": "signal", "id": job.id, "signal": int(sig)})
        except _WorkerGone:
            pid = self._child_pids.get(job.id)
            if pid is not None:
                _signal_group(pid, sig)

    def abort(self, job: _Job) -> None:
        self._signal_job(job, signal.SIGKILL)


class _SparkWorker(_Worker):
    """A worker that runs jobs one at a time in its own process, next to a live SparkSession."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.busy = False  # changed only under WarmPool._lock

    def execute(self, job: _Job, request: dict[str, Any], deadline: float) -> WarmJobResult:
        self._output_job = job
        try:
            self.send({"op": "run", "id": job.id, **request})
        except _WorkerGone:
            self._output_job = None
            raise
        try:
            result, broken = self._wait(job, deadline)
            if not job.output_done.wait(timeout=OUTPUT_DRAIN_SECONDS):
                self._log.warning(
                    "The %s did not finish the output of job %d", self.describe(), job.id
                )
        finally:
            self._output_job = None
            job.detach()
        if broken:
            self.kill()
        return result

    def _wait(self, job: _Job, deadline: float) -> tuple[WarmJobResult, bool]:
        while True:
            remaining = deadline - time.monotonic()
            if job.stop_requested.is_set() or remaining <= 0:
                end_reason = "stop" if job.stop_requested.is_set() else "timeout"
                self._log.info(
                    "Ending the %s because job %d %s",
                    self.describe(),
                    job.id,
                    "was stopped" if end_reason == "stop" else "timed out",
                )
                self.terminate()
                code = self.proc.returncode if self.proc is not None else None
                if not code:
                    code = -signal.SIGKILL
                result = WarmJobResult(code, end_reason == "timeout", end_reason == "stop")
                return result, True
            try:
                message = job.messages.get(timeout=min(STOP_POLL_SECONDS, remaining))
            except queue.Empty:
                continue
            if message["op"] == "exited":
                if message.get("broken"):
                    self._log.warning(
                        "The %s is broken after job %d and will be replaced",
                        self.describe(),
                        job.id,
                    )
                return WarmJobResult(int(message["code"])), bool(message.get("broken"))
            if message["op"] == "eof":
                # The job ended the worker process itself, for example with os._exit().
                assert self.proc is not None
                try:
                    code = self.proc.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    self.kill()
                    code = self.proc.returncode
                self._log.warning(
                    "The %s exited with code %s during job %d and will be replaced",
                    self.describe(),
                    code,
                    job.id,
                )
                return WarmJobResult(code if code is not None else -signal.SIGKILL), True

    def abort(self, job: _Job) -> None:
        self.kill()


def _pump_pipe(read_fd: int, job: _Job) -> None:
    """Pass each line of a forked job's output pipe to the job until every writer has closed it."""
    with os.fdopen(read_fd, "rb") as stream:
        for raw in stream:
            job.emit(raw.decode("utf-8", errors="replace").rstrip("\n"))
    job.output_done.set()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _startup_key(interpreter: str, env: dict[str, str]) -> tuple:
    """Return what a worker must share with a job to stand in for the job's cold process."""
    values = sorted(
        (name, value)
        for name, value in env.items()
        if name not in _RUNTIME_VARIABLES
        and (name in _STARTUP_VARIABLES or name.startswith(_STARTUP_VARIABLE_PREFIXES))
    )
    return (interpreter, tuple(values))


class WarmPool:
    """Warm worker processes that run training and processing jobs without a cold start.

    `run` is thread-safe. Jobs of kind training or python may run concurrently, each in its
    own forked child. Concurrent spark jobs each get a worker of their own, because one JVM
    runs one job at a time. A worker that dies during a job, or that a job leaves broken, is
    replaced in the background.
    """

    def __init__(self, log: logging.Logger | None = None) -> None:
        self._log = log or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._zygotes: dict[str, _ZygoteWorker] = {}
        self._spark_workers: list[_SparkWorker] = []
        # Replaced workers that still run a job. Each is closed after its last job.
        self._retired_workers: list[_Worker] = []
        self._jobs: dict[int, _Job] = {}
        self._next_job_id = 1
        self._workdir: Path | None = None
        # PR_SET_PDEATHSIG fires when the thread that started a worker ends, so every worker is
        # started from this one thread, which lives until close().
        self._spawner: ThreadPoolExecutor | None = None
        self._closed = False
        atexit.register(self.close)

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(
        self,
        kind: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        on_line: Callable[[str], None],
        timeout: float,
        stop: threading.Event | None = None,
    ) -> int:
        """Run `argv` as `kind` and return the exit status the cold process would have returned.

        `argv` is the command that `jobs.py` would run: `[python, script, *args]` for kinds
        python and spark, and `[python, "-m", "sagemaker_training.cli.train"]` for training.
        `on_line` is called from a reader thread for each line the job prints. When `timeout`
        seconds pass, or when `stop` is set, the job is ended and a negative status (the signal)
        is returned. Raises ValueError for a command a warm worker cannot run, and RuntimeError when the
        worker for `kind` fails to start, with the worker's last output lines.
        """
        return self.run_job(kind, argv, env, cwd, on_line, timeout, stop).code

    def run_job(
        self,
        kind: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        on_line: Callable[[str], None],
        timeout: float,
        stop: threading.Event | None = None,
    ) -> WarmJobResult:
        """Run a job like `run`, and also return whether it timed out or was stopped."""
        _parse_job_command(kind, argv)
        cwd = Path(cwd)
        if not cwd.is_dir():
            raise FileNotFoundError(
                errno.ENOENT, "the job's working directory does not exist", str(cwd)
            )
        request = {"argv": list(argv), "env": dict(env), "cwd": str(cwd)}

        last_error: _WorkerGone | None = None
        for _attempt in range(2):
            try:
                result = self._run_once(kind, argv, env, request, on_line, timeout, stop)
            except _WorkerGone as error:
                self._log.warning("%s. Starting a new warm %s worker", error, kind)
                last_error = error
                continue
            if (result.timed_out or result.stopped) and result.code == 0:
                # The job caught SIGTERM and exited 0, but it did not run to its end.
                result = WarmJobResult(-signal.SIGTERM, result.timed_out, result.stopped)
            return result
        raise RuntimeError(
            f"The warm {kind} worker ended twice before the job started: {last_error}"
        ) from last_error

    def _run_once(
        self,
        kind: str,
        argv: list[str],
        env: dict[str, str],
        request: dict[str, Any],
        on_line: Callable[[str], None],
        timeout: float,
        stop: threading.Event | None,
    ) -> WarmJobResult:
        """Run the job on a worker. Raises _WorkerGone when the worker ended before it began."""
        worker = self._acquire(kind, argv[0], env)
        job = self._register_job(worker, on_line, stop)
        # The worker's start-up is not part of the job, so the timeout starts here.
        deadline = time.monotonic() + timeout
        try:
            return worker.execute(job, request, deadline)
        except _WorkerGone:
            raise
        except BaseException:
            # Ctrl-C or an error here: no process of the job may outlive it.
            worker.abort(job)
            raise
        finally:
            self._release(worker, job)

    def prestart(self, kinds: Iterable[str], interpreter: str, env: dict[str, str]) -> None:
        """Start a worker of each kind in the background, so that the first job finds it warm.

        A kind that already has a usable worker is left alone. A start that fails is logged,
        and the next job of that kind starts a worker itself and reports the error.
        """
        key = _startup_key(interpreter, env)
        starting: list[_Worker] = []
        stale: list[_Worker] = []
        with self._lock:
            if self._closed:
                return
            for kind in dict.fromkeys(kinds):
                if kind in _FORKING_KINDS:
                    existing = self._zygotes.get(kind)
                    if existing is not None and existing.usable:
                        continue
                    if existing is not None:
                        self._retire(existing, stale)
                elif any(worker.usable for worker in self._spark_workers):
                    continue
                starting.append(self._add_worker(kind, interpreter, key))
            workdir = self._ensure_workdir()
        for old in stale:
            old.close()
        for worker in starting:
            threading.Thread(
                target=self._start_in_background,
                args=(worker, env, workdir),
                name=f"warm-{worker.kind}-prestart",
                daemon=True,
            ).start()

    def stop_job(self) -> None:
        """End every job in progress, as Ctrl-C does. Each `run` returns a negative status.

        A forked job's child is ended (SIGTERM, then SIGKILL) and its zygote stays. A spark
        job's worker is ended with its JVM, and a replacement starts in the background.
        """
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.request_stop()

    def close(self) -> None:
        """End every job and every worker process. Safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            jobs = list(self._jobs.values())
            workers: list[_Worker] = [
                *self._zygotes.values(),
                *self._spark_workers,
                *self._retired_workers,
            ]
            self._zygotes.clear()
            self._spark_workers.clear()
            self._retired_workers.clear()
        for job in jobs:
            job.request_stop()
        for worker in workers:
            worker.close()
            self._log.info("Closed the %s", worker.describe())
        if self._spawner is not None:
            self._spawner.shutdown(wait=False)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        atexit.unregister(self.close)

    @property
    def closed(self) -> bool:
        return self._closed

    def worker_pids(self) -> dict[str, list[int]]:
        """Return the pids of the running worker processes by kind."""
        pids: dict[str, list[int]] = {kind: [] for kind in KINDS}
        with self._lock:
            workers: list[_Worker] = [*self._zygotes.values(), *self._spark_workers]
        for worker in workers:
            if worker.alive and worker.pid is not None:
                pids[worker.kind].append(worker.pid)
        return pids

    # -- workers ------------------------------------------------------------------------------

    def _acquire(self, kind: str, interpreter: str, env: dict[str, str]) -> _Worker:
        """Return a started worker for the job, starting one when none fits."""
        key = _startup_key(interpreter, env)
        stale: list[_Worker] = []
        with self._lock:
            if self._closed:
                raise RuntimeError("The WarmPool is closed. Create a new one to run more jobs")
            worker: _Worker | None
            if kind in _FORKING_KINDS:
                worker = self._zygotes.get(kind)
                if worker is not None and not (worker.usable and worker.startup_key == key):
                    self._retire(worker, stale)
                    worker = None
            else:
                for candidate in [w for w in self._spark_workers if not w.busy]:
                    if not (candidate.usable and candidate.startup_key == key):
                        self._retire(candidate, stale)
                worker = next((w for w in self._spark_workers if not w.busy), None)
            if worker is None:
                worker = self._add_worker(kind, interpreter, key)
            if isinstance(worker, _SparkWorker):
                worker.busy = True
            worker.active_jobs += 1
            workdir = self._ensure_workdir()
        for old in stale:
            old.close()

        try:
            worker.ensure_started(env, workdir, self._spawn)
        except BaseException:
            with self._lock:
                worker.active_jobs -= 1
                self._remove(worker)
            raise
        return worker

    def _add_worker(self, kind: str, interpreter: str, key: tuple) -> _Worker:
        """Create a worker and put it in the pool (under _lock). It starts on first use."""
        if kind in _FORKING_KINDS:
            zygote = _ZygoteWorker(kind, interpreter, key, self._log)
            self._zygotes[kind] = zygote
            return zygote
        spark = _SparkWorker(kind, interpreter, key, self._log)
        self._spark_workers.append(spark)
        return spark

    def _remove(self, worker: _Worker) -> None:
        """Take `worker` out of the pool (under _lock). The caller closes it."""
        if isinstance(worker, _SparkWorker):
            worker.busy = False
            if worker in self._spark_workers:
                self._spark_workers.remove(worker)
        elif self._zygotes.get(worker.kind) is worker:
            del self._zygotes[worker.kind]

    def _retire(self, worker: _Worker, stale: list[_Worker]) -> None:
        """Take `worker` out of the pool (under _lock) and close it after its last job."""
        self._remove(worker)
        if worker.alive:
            self._log.info(
                "Replacing the %s: the job's start-up environment differs", worker.describe()
            )
        if worker.active_jobs == 0:
            stale.append(worker)
        else:
            worker.retired = True
            self._retired_workers.append(worker)

    def _register_job(
        self, worker: _Worker, on_line: Callable[[str], None], stop: threading.Event | None
    ) -> _Job:
        with self._lock:
            job = _Job(self._next_job_id, on_line, self._log, stop)
            self._next_job_id += 1
            self._jobs[job.id] = job
        worker.register(job)
        return job

    def _release(self, worker: _Worker, job: _Job) -> None:
        """Return the worker after a job, and replace it in the background if the job ended it."""
        worker.unregister(job)
        replacement: _Worker | None = None
        with self._lock:
            self._jobs.pop(job.id, None)
            worker.active_jobs -= 1
            if isinstance(worker, _SparkWorker):
                worker.busy = False
            died = not worker.alive and not worker.retired
            if died and not self._closed and self._is_in_pool(worker):
                self._remove(worker)
                # A broken spark worker is expected after a timeout or Ctrl-C. Starting its
                # successor now, while the user edits code, keeps the next run warm.
                replacement = self._add_worker(worker.kind, worker.interpreter, worker.startup_key)
            close_now = worker.active_jobs == 0 and (worker.retired or not worker.alive)
            if close_now and worker in self._retired_workers:
                self._retired_workers.remove(worker)
            workdir = self._workdir
        if close_now:
            worker.close()
        if replacement is not None and worker.start_env is not None and workdir is not None:
            threading.Thread(
                target=self._start_in_background,
                args=(replacement, worker.start_env, workdir),
                name=f"warm-{worker.kind}-replacement",
                daemon=True,
            ).start()

    def _is_in_pool(self, worker: _Worker) -> bool:
        if isinstance(worker, _SparkWorker):
            return worker in self._spark_workers
        return self._zygotes.get(worker.kind) is worker

    def _start_in_background(self, worker: _Worker, env: dict[str, str], workdir: Path) -> None:
        try:
            worker.ensure_started(env, workdir, self._spawn, warm_up=True)
        except BaseException as error:
            with self._lock:
                self._remove(worker)
            if worker.closing:
                self._log.debug(
                    "The pool closed a replacement warm %s worker while it started", worker.kind
                )
            else:
                # The next job of this kind starts a worker itself and raises the error.
                self._log.warning(
                    "Failed to start a replacement warm %s worker: %s", worker.kind, error
                )

    def _ensure_workdir(self) -> Path:
        if self._workdir is None:
            # Workers start here, so files that Spark writes relative to its start folder
            # (spark-warehouse, metastore_db) stay out of job folders and are deleted on close.
            self._workdir = Path(tempfile.mkdtemp(prefix="harness-warm-"))
        return self._workdir

    def _spawn(self, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._spawner is None:
                self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-spawner")
            spawner = self._spawner
        return spawner.submit(subprocess.Popen, command, **kwargs).result()


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PythonCommand:
    """Script or module, with its arguments, that `python [options] target args...` runs."""

    target: str
    args: tuple[str, ...]
    module: bool = False
    no_bytecode: bool = False


def _parse_python_command(arguments: list[str]) -> _PythonCommand:
    """Parse the arguments after the interpreter. Raises ValueError for unsupported options."""
    no_bytecode = False
    index = 0
    while index < len(arguments) and arguments[index].startswith("-"):
        option = arguments[index]
        if option == "--":
            index += 1
            break
        if option == "-m":
            if index + 1 >= len(arguments):
                raise ValueError("the command has -m without a module name")
            return _PythonCommand(
                arguments[index + 1],
                tuple(arguments[index + 2 :]),
                module=True,
                no_bytecode=no_bytecode,
            )
        if option == "-u":  # warm jobs write stdout line by line anyway
            index += 1
        elif option == "-B":
            no_bytecode = True
            index += 1
        else:
            raise ValueError(
                f"a warm worker cannot run the interpreter option {option!r}. Run the job cold"
            )
    if index >= len(arguments):
        raise ValueError("the command names no script or module to run")
    return _PythonCommand(arguments[index], tuple(arguments[index + 1 :]), no_bytecode=no_bytecode)


def _parse_job_command(kind: str, argv: list[str]) -> _PythonCommand | None:
    """Check that a warm worker of `kind` can run `argv`. Raises ValueError when it cannot."""
    if kind not in KINDS:
        raise ValueError(f"unknown warm worker kind {kind!r}, expected one of {', '.join(KINDS)}")
    if len(argv) < 2:
        raise ValueError(f"the command {argv!r} has no script after the interpreter")
    if kind == "training":
        if tuple(argv[1:]) != TRAINING_COMMAND:
            raise ValueError(
                f"a warm training job runs `python {' '.join(TRAINING_COMMAND)}`, not {argv[1:]!r}"
            )
        return None
    return _parse_python_command(argv[1:])


# ---------------------------------------------------------------------------------------------
# Worker side: shared by every kind
# ---------------------------------------------------------------------------------------------

# Runs in a new worker interpreter. It imports this module from the harness checkout, then
# removes that folder from sys.path, so jobs see the sys.path of a plain `python` process.
_BOOTSTRAP = """\
import sys
sys.path[0] = {root!r}
from harness.local import warm
del sys.path[0]
warm._worker_main(sys.argv[1:])
"""

# sys.path of the worker interpreter without its first entry, which a cold `python` sets to
# the script's folder (or to the working directory for `-m`).
_base_sys_path: list[str] = []


def _worker_main(arguments: list[str]) -> None:
    """Run a worker. `arguments` are the kind, the control socket's fd, the harness pid and
    `warm-up` or `no-warm-up`."""
    kind, control_fd, parent_pid = arguments[0], int(arguments[1]), int(arguments[2])
    warm_up = arguments[3] == "warm-up"
    _exit_with_parent(parent_pid)
    _base_sys_path[:] = sys.path
    assert isinstance(sys.stdout, io.TextIOWrapper)
    sys.stdout.reconfigure(line_buffering=True)
    sock = socket.socket(fileno=control_fd)
    if kind == "spark":
        _serve_spark(sock, warm_up)
    else:
        _serve_zygote(kind, sock)
    # os._exit skips interpreter shutdown: the worker has nothing to save, and shutdown can
    # hang on a dead JVM. A spark worker's JVM exits when its stdin, a pipe from here, closes.
    _flush_standard_streams()
    os._exit(0)


def _exit_with_parent(parent_pid: int) -> None:
    """Have Linux send SIGKILL to this process when the thread that started it ends."""
    # NOTE: macOS has no PR_SET_PDEATHSIG. There a worker exits when its control socket
    # reaches EOF, which it reads only between jobs, and a forked job outlives its zygote.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(code)}")
    if os.getppid() != parent_pid:
        # The parent ended before the signal was armed.
        os._exit(1)


def _send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall((json.dumps(message) + "\n").encode())


def _install_prefixes() -> tuple[str, ...]:
    """Return the folders of the interpreter's standard library and installed packages."""
    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    folders.update(site.getsitepackages())
    folders.add(site.getusersitepackages())
    return tuple(sorted(os.path.realpath(folder) for folder in folders))


def _is_installed_path(path: str, prefixes: tuple[str, ...]) -> bool:
    real = os.path.realpath(path)
    return any(real == prefix or real.startswith(prefix + os.sep) for prefix in prefixes)


def _job_sys_path(first_entry: str) -> list[str]:
    """Return sys.path as a cold `python` starts it: the script's folder, PYTHONPATH, the rest."""
    entries = [first_entry]
    entries += [
        os.path.abspath(entry)
        for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if entry
    ]
    entries += _base_sys_path
    return list(dict.fromkeys(entries))


def _reseed_random_generators() -> None:
    """Give the job fresh random state, as a new process has, instead of the worker's."""
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _exit_status(code: object) -> int:
    """Return the exit status that `sys.exit(code)` gives a process, printing it if it is text."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _report_uncaught(error: BaseException) -> None:
    """Print a traceback as the interpreter does, without the frames of this worker."""
    skipped = {os.path.abspath(__file__), os.path.abspath(runpy.__file__)}
    tb = error.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) in skipped:
        tb = tb.tb_next
    # The interpreter prints the exception's own __traceback__, not the one passed.
    error.__traceback__ = tb
    sys.excepthook(type(error), error, tb)


def _run_python_command(command: _PythonCommand) -> int:
    """Run a script or module as `__main__` in this process and return `python`'s exit status."""
    if command.no_bytecode:
        sys.dont_write_bytecode = True
    if command.module:
        sys.path[:] = _job_sys_path(os.getcwd())
        sys.argv = ["-m", *command.args]
    else:
        sys.path[:] = _job_sys_path(os.path.dirname(os.path.realpath(command.target)))
        sys.argv = [command.target, *command.args]
    try:
        if command.module:
            runpy.run_module(command.target, run_name="__main__", alter_sys=True)
        elif os.path.isdir(command.target) or zipfile.is_zipfile(command.target):
            runpy.run_path(command.target, run_name="__main__")
        else:
            return _run_script_file(command.target)
    except SystemExit as request:
        return _exit_status(request.code)
    except BaseException as error:
        _report_uncaught(error)
        return 1
    return 0


def _run_script_file(path: str) -> int:
    """Execute a script file as `__main__`. Returns 2 when it cannot be read, as `python` does.

    `runpy.run_path` sets sys.argv[0] to the path it runs. `python script.py` keeps argv[0]
    as given and sets `__file__` to the absolute path, which this function repeats.
    """
    absolute = os.path.abspath(path)
    try:
        with io.open_code(absolute) as file:
            source = file.read()
    except OSError as error:
        reason = f"[Errno {error.errno}] {error.strerror}"
        print(f"{sys.executable}: can't open file {absolute!r}: {reason}", file=sys.stderr)
        return 2
    main = types.ModuleType("__main__")
    main.__file__ = absolute
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", absolute)
    main.__builtins__ = builtins
    main.__spec__ = None
    main.__package__ = None
    main.__cached__ = None  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    try:
        code = compile(source, absolute, "exec", dont_inherit=True)
        exec(code, main.__dict__)
    except SystemExit as request:
        return _exit_status(request.code)
    except BaseException as error:
        _report_uncaught(error)
        return 1
    return 0


def _run_like_process(command: _PythonCommand, install_prefixes: tuple[str, ...]) -> int:
    """Run a command in-process, then finish it as the interpreter finishes a process.

    After the script, the interpreter waits for its non-daemon threads and calls its atexit
    handlers. This function does the same for the threads the job started and the handlers
    its own code registered, and returns the script's exit status.
    """
    threads_before = set(threading.enumerate())
    with _collect_job_exit_handlers(install_prefixes) as handlers:
        code = _run_python_command(command)
        _join_threads_started_since(threads_before)
    for function, args, kwargs in reversed(handlers):
        try:
            function(*args, **kwargs)
        except Exception:
            print(f"Exception ignored in atexit callback: {function!r}", file=sys.stderr)
            traceback.print_exc()
    return code


def _join_threads_started_since(before: set[threading.Thread]) -> None:
    """Wait for the job's non-daemon threads, as the interpreter does before it exits."""
    for thread in threading.enumerate():
        if thread not in before and not thread.daemon and thread is not threading.current_thread():
            thread.join()


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


# ---------------------------------------------------------------------------------------------
# Worker side: zygotes (training and python)
# ---------------------------------------------------------------------------------------------


def _serve_zygote(kind: str, sock: socket.socket) -> None:
    environ_before = dict(os.environ)
    for name in _WORKER_IMPORTS[kind]:
        importlib.import_module(name)
    # Importing TensorFlow sets variables such as TF2_BEHAVIOR. In a cold run the job's
    # process imports it and has them, so each forked job gets them too.
    import_environ = {
        name: value
        for name, value in os.environ.items()
        if environ_before.get(name) != value and name != "SAGEMAKER_BASE_DIR"
    }
    _flush_standard_streams()
    _Zygote(kind, sock, import_environ).serve()


class _Zygote:
    """The loop of a zygote: fork a child per job, signal it on request, report its exit."""

    def __init__(self, kind: str, sock: socket.socket, import_environ: dict[str, str]) -> None:
        self.kind = kind
        self.sock = sock
        self.import_environ = import_environ
        self.children: dict[int, int] = {}  # pid -> job id
        self.buffer = b""
        self.received_fds: deque[int] = deque()
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        # SIGCHLD writes a byte to wake_write, which wakes select() to reap the child.
        signal.set_wakeup_fd(self.wake_write)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def serve(self) -> None:
        _send_message(self.sock, {"op": "ready", "pid": os.getpid()})
        try:
            while True:
                readable, _, _ = select.select([self.sock, self.wake_read], [], [])
                if self.wake_read in readable:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wake_read, 512):
                            pass
                self._reap()
                if self.sock in readable:
                    if not self._receive():
                        return  # EOF: the harness has closed the pool or died
                    for message in self._take_messages():
                        if message["op"] == "exit":
                            return
                        self._handle(message)
        finally:
            self._end_children()

    def _receive(self) -> bool:
        data, fds, _flags, _address = socket.recv_fds(self.sock, 1 << 16, 16)
        self.received_fds.extend(fds)
        self.buffer += data
        return bool(data)

    def _take_messages(self) -> Iterator[dict[str, Any]]:
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            yield json.loads(line)

    def _handle(self, message: dict[str, Any]) -> None:
        if message["op"] == "run":
            # The harness attaches the job's output pipe to the first byte of each run
            # request, so the fds arrive in the order of the requests.
            self._fork_job(message, self.received_fds.popleft())
        elif message["op"] == "signal":
            for pid, job_id in self.children.items():
                if job_id == message["id"]:
                    _signal_group(pid, int(message["signal"]))

    def _fork_job(self, message: dict[str, Any], output_fd: int) -> None:
        _flush_standard_streams()
        zygote_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = self._run_child(message, output_fd, zygote_pid)
            except BaseException:
                traceback.print_exc()
            finally:
                _flush_standard_streams()
                os._exit(code)
        os.close(output_fd)
        # Both sides set the process group, so that it exists before either goes on.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        self.children[pid] = message["id"]
        _send_message(self.sock, {"op": "started", "id": message["id"], "pid": pid})

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job_id = self.children.pop(pid, None)
            # Processes that the job started and left behind end with it.
            _signal_group(pid, signal.SIGKILL)
            if job_id is not None:
                code = os.waitstatus_to_exitcode(status)
                _send_message(self.sock, {"op": "exited", "id": job_id, "code": code})

    def _end_children(self) -> None:
        for pid in list(self.children):
            _signal_group(pid, signal.SIGKILL)
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()

    def _run_child(self, message: dict[str, Any], output_fd: int, zygote_pid: int) -> int:
        """Become the job's process and return its exit status (runs in the forked child)."""
        os.setpgid(0, 0)
        _exit_with_parent(zygote_pid)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(self.wake_read)
        os.close(self.wake_write)
        self.sock.close()
        for fd in self.received_fds:
            os.close(fd)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)

        os.environ.clear()
        os.environ.update(message["env"])
        for name, value in self.import_environ.items():
            os.environ.setdefault(name, value)
        time.tzset()
        os.chdir(message["cwd"])
        importlib.invalidate_caches()
        _reseed_random_generators()

        threads_before = set(threading.enumerate())
        if self.kind == "training":
            code = _train_in_process()
        else:
            command = _parse_python_command(message["argv"][1:])
            code = _run_python_command(command)
        _join_threads_started_since(threads_before)
        # The job's process ends here, so its atexit handlers run as at interpreter exit.
        atexit._run_exitfuncs()
        return code


def _train_in_process() -> int:
    """Run `python -m sagemaker_training.cli.train` in this process and return its exit status.

    This is the toolkit's own `trainer.train()`: it reads the config files, downloads and
    extracts `sagemaker_submit_directory` into the code folder, sets the `SM_*` variables,
    writes the success or failure file and exits 0 or 1. Only the step that starts the user
    script as `python <script> <args>` is replaced, by `_run_user_script_in_process`.
    """
    from sagemaker_training import environment, intermediate_output, trainer

    # These modules compute /opt/ml paths from SAGEMAKER_BASE_DIR when they are imported.
    importlib.reload(environment)
    importlib.reload(intermediate_output)
    _run_user_script_in_process()

    sys.path[:] = _job_sys_path(os.getcwd())
    sys.argv = [os.path.abspath(sys.modules["sagemaker_training.cli.train"].__file__ or "")]
    try:
        trainer.train()
    except SystemExit as request:
        return _exit_status(request.code)
    except BaseException as error:
        _report_uncaught(error)
        return 1
    return 0


def _run_user_script_in_process() -> None:
    """Patch the toolkit (in a forked child only) to run the user script in this process.

    `ProcessRunner.run` builds `[python, "--", script, *args]` (or `[python, "-m", module,
    *args]` for a package) and passes it to `process.check_error`, which starts it with
    `subprocess.Popen` and raises the toolkit's error for a non-zero exit. The patched
    `check_error` runs the same command in-process and raises the same error. Any other
    command, such as `pip install -r requirements.txt` or a shell entry point, still runs as
    a subprocess.
    """
    from inspect import isclass

    from sagemaker_training import environment, errors, process

    original_run = process.ProcessRunner.run
    original_check_error = process.check_error
    inside_runner = threading.local()

    def run(self: Any, wait: bool = True, capture_error: bool = False) -> Any:
        inside_runner.active = type(self) is process.ProcessRunner and wait
        try:
            return original_run(self, wait, capture_error)
        finally:
            inside_runner.active = False

    def check_error(
        cmd: list[str],
        error_classes: Any,
        processes_per_host: int,
        cwd: str | None = None,
        capture_error: bool = True,
        **kwargs: Any,
    ) -> Any:
        command = None
        if (
            getattr(inside_runner, "active", False)
            and cmd
            and cmd[0] == process.python_executable()
        ):
            with contextlib.suppress(ValueError):
                command = _parse_python_command(list(cmd[1:]))
        if command is None:
            return original_check_error(
                cmd,
                error_classes,
                processes_per_host,
                cwd=cwd,
                capture_error=capture_error,
                **kwargs,
            )

        os.chdir(cwd or environment.code_dir)
        # The script starts with the root logger of a new interpreter, not the toolkit's.
        root = logging.getLogger()
        toolkit_handlers, toolkit_level = list(root.handlers), root.level
        root.handlers.clear()
        root.setLevel(logging.WARNING)
        try:
            return_code = _run_like_process(command, _install_prefixes())
        finally:
            _flush_standard_streams()
            root.handlers[:] = toolkit_handlers
            root.setLevel(toolkit_level)
        if return_code:
            # The same choice of error class as check_error makes when it captured no stderr.
            names = process.process_error_classes(error_classes)
            internal = [name for name in dir(errors) if isclass(getattr(errors, name))]
            error_class = getattr(
                errors, next((name for name in names if name in internal), "ExecuteUserScriptError")
            )
            info = (
                "OutOfMemory: Process killed by SIGKILL (signal 9)" if return_code == 137 else None
            )
            raise error_class(cmd=" ".join(cmd), return_code=return_code, output=None, info=info)
        return subprocess.CompletedProcess(cmd, return_code)

    process.ProcessRunner.run = run
    process.check_error = check_error


# ---------------------------------------------------------------------------------------------
# Worker side: spark
# ---------------------------------------------------------------------------------------------


def _serve_spark(sock: socket.socket, warm_up: bool) -> None:
    host = _SparkJobHost()
    if warm_up:
        host.warm_up()
    _send_message(sock, {"op": "ready", "pid": os.getpid()})
    with sock.makefile("rb") as reader:
        for raw in reader:
            message = json.loads(raw)
            if message["op"] == "exit":
                host.shut_down()
                break
            if message["op"] == "run":
                code, broken = host.run_job(message)
                _flush_standard_streams()
                os.write(1, f"{_END_MARK}{message['id']}\x00\n".encode())
                _send_message(
                    sock, {"op": "exited", "id": message["id"], "code": code, "broken": broken}
                )
                if broken:
                    break


class _SparkJobHost:
    """A live SparkSession and the state it resets between jobs.

    Each job gets a new session from `newSession()` on the shared SparkContext, so runtime
    SQL configuration, temporary views and registered functions start fresh. After the job,
    the host restores the environment, working directory, sys.path, sys.argv, standard
    streams, logging, warning filters and signal handlers, drops the job's modules, clears
    cached tables and persisted RDDs, and drops global temporary views.

    NOTE: a job still shares with later jobs whatever it changes in modules that stay loaded
    (NumPy, pandas, PySpark and other installed packages), the SparkContext's configuration
    and the Python hash seed, none of which a cold process would share. A script that calls
    `SparkContext(...)` itself fails with PySpark's "Cannot run multiple SparkContexts",
    while `SparkContext.getOrCreate()` and `SparkSession.builder` work.
    """

    def __init__(self) -> None:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        for name in _WORKER_IMPORTS["spark"]:
            importlib.import_module(name)
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        self.session_class = SparkSession
        self.context_class = SparkContext
        local_ip = os.environ["SPARK_LOCAL_IP"]
        self.session = (
            SparkSession.builder.appName("harness-warm-spark")
            .config("spark.driver.host", local_ip)
            .config("spark.driver.bindAddress", local_ip)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            # Each run of a step adds its own common.zip with addPyFile. Spark rejects a file
            # whose name it has seen with other content unless overwriting is on.
            .config("spark.files.overwrite", "true")
            # A reused Python worker keeps the modules it imported for an earlier job, so an
            # edited module would not reach UDFs and RDD functions.
            .config("spark.python.worker.reuse", "false")
            .getOrCreate()
        )
        self.context = self.session.sparkContext
        self.log_level_changed = False
        self.install_prefixes = _install_prefixes()
        self.baseline_modules = set(sys.modules)
        self.hadoop_defaults: dict[str, str | None] = {}
        self.original_context_stop = SparkContext.stop
        self.original_set_log_level = SparkContext.setLogLevel
        self._patch_pyspark()

    def warm_up(self) -> None:
        """Run a query and a reset once, so that the JVM has loaded and compiled their code
        before the first job, which would otherwise take seconds longer than later ones."""
        session = self.session.newSession()
        self._install_session(session)
        numbers = session.range(10)
        numbers.groupBy((numbers.id % 2).alias("parity")).count().collect()
        self._reset_spark(session)

    # -- PySpark patches ----------------------------------------------------------------------

    def _patch_pyspark(self) -> None:
        """Make `stop()` a no-op and apply the options of every later builder to the job."""

        def ignore_stop(self_: object) -> None:
            """Keep the warm JVM: the worker, not the job, stops Spark."""

        self.session_class.stop = ignore_stop  # type: ignore[method-assign]
        self.context_class.stop = ignore_stop  # type: ignore[method-assign]

        host = self

        def set_log_level(context: Any, level: str) -> None:
            host.log_level_changed = True
            host.original_set_log_level(context, level)

        self.context_class.setLogLevel = set_log_level  # type: ignore[method-assign]

        builder_class = self.session_class.Builder
        original_get_or_create = builder_class.getOrCreate

        def get_or_create(builder: Any) -> Any:
            session = original_get_or_create(builder)
            host.apply_builder_options(session, dict(builder._options))
            return session

        get_or_create.__doc__ = original_get_or_create.__doc__
        builder_class.getOrCreate = get_or_create  # type: ignore[method-assign]

    def apply_builder_options(self, session: Any, options: dict[str, str]) -> None:
        """Apply what a running SparkContext can take of a job's builder options.

        NOTE: on an existing session, `getOrCreate()` (PySpark 3.5) applies only runtime SQL
        options, such as spark.sql.shuffle.partitions. Static SQL and SparkContext options
        (spark.executor.memory, spark.serializer, ...) keep the warm context's values.

        Spark then logs "Using an existing Spark session". This host also copies the
        `spark.hadoop.*` options into the context's Hadoop configuration until the job ends,
        and prints the other options that did not take effect. spark.app.name is left out of
        that message.
        """
        hadoop = self.context._jsc.hadoopConfiguration()
        context_conf = self.context.getConf()
        ignored = []
        for key, value in options.items():
            if key.startswith("spark.hadoop."):
                name = key[len("spark.hadoop.") :]
                if name not in self.hadoop_defaults:
                    self.hadoop_defaults[name] = hadoop.get(name)
                hadoop.set(name, value)
            elif key == "spark.app.name" or session.conf.isModifiable(key):
                continue
            elif context_conf.get(key, None) != value:
                ignored.append(f"{key}={value}")
        if ignored:
            print(
                "warm Spark worker: the running SparkContext keeps its own values of "
                f"{', '.join(ignored)}. These builder options take effect only in a cold run",
                file=sys.stderr,
                flush=True,
            )

    # -- jobs ---------------------------------------------------------------------------------

    def run_job(self, message: dict[str, Any]) -> tuple[int, bool]:
        """Run one job. Returns its exit status and whether this worker must be replaced."""
        command = _parse_python_command(message["argv"][1:])
        saved = _ProcessState.capture()
        job_session = None
        code, broken = 1, False
        try:
            self._drop_job_modules()
            job_session = self.session.newSession()
            self._install_session(job_session)
            os.environ.clear()
            os.environ.update(message["env"])
            time.tzset()
            os.chdir(message["cwd"])
            importlib.invalidate_caches()
            _reseed_random_generators()
            with warnings.catch_warnings():
                code = _run_like_process(command, self.install_prefixes)
        except BaseException:
            traceback.print_exc()
            print(
                "warm Spark worker: the error above is in the worker, not in the job",
                file=sys.stderr,
            )
            broken = True
        finally:
            _flush_standard_streams()
            try:
                # Modules first: loggers named after a dropped module are reset with them.
                self._drop_job_modules()
                saved.restore()
                if job_session is not None:
                    self._reset_spark(job_session)
            except BaseException:
                traceback.print_exc()
                print(
                    "warm Spark worker: failed to reset the worker after the job", file=sys.stderr
                )
                broken = True
        if not broken and not self._is_healthy():
            print(
                "warm Spark worker: the SparkContext is stopped or its JVM is gone", file=sys.stderr
            )
            broken = True
        _flush_standard_streams()
        return code, broken

    def _install_session(self, session: Any) -> None:
        """Make `session` the one that `SparkSession.builder.getOrCreate()` returns."""
        self.session_class._instantiatedSession = session
        self.session_class._activeSession = session
        jvm_session_class = self.context._jvm.SparkSession
        jvm_session_class.setDefaultSession(session._jsparkSession)
        jvm_session_class.setActiveSession(session._jsparkSession)

    def _reset_spark(self, job_session: Any) -> None:
        catalog = job_session.catalog
        # Listing global_temp also lists the session's own temporary views.
        for table in catalog.listTables("global_temp"):
            if not table.isTemporary:
                continue
            if table.database == "global_temp":
                catalog.dropGlobalTempView(table.name)
            else:
                catalog.dropTempView(table.name)
        self.session.catalog.clearCache()
        for rdd in list(self.context._jsc.getPersistentRDDs().values()):
            rdd.unpersist()
        hadoop = self.context._jsc.hadoopConfiguration()
        for name, value in self.hadoop_defaults.items():
            if value is None:
                hadoop.unset(name)
            else:
                hadoop.set(name, value)
        self.hadoop_defaults.clear()
        if self.log_level_changed:
            # PySpark starts an application at WARN ("Setting default log level to WARN"),
            # while log4j's root logger reports INFO, so the level is not read back from log4j.
            self.original_set_log_level(self.context, _SPARK_DEFAULT_LOG_LEVEL)
            self.log_level_changed = False
        for key in ("spark.job.description", "spark.jobGroup.id", "spark.scheduler.pool"):
            self.context.setLocalProperty(key, None)  # type: ignore[arg-type]
        self._install_session(self.session)

    def _drop_job_modules(self) -> None:
        """Remove modules the job imported from outside the installed packages, so that the
        next job imports edited code afresh. This covers the job's code folders, such as the
        parent's parent folder of a step script, and the zip files added with addPyFile.
        """
        for name, module in list(sys.modules.items()):
            if name in self.baseline_modules or module is None:
                continue
            # vars() and not getattr(), which would load a lazily loaded module.
            attributes = vars(module) if hasattr(module, "__dict__") else {}
            file = attributes.get("__file__")
            paths = [file] if file else list(attributes.get("__path__") or [])
            if paths and not all(_is_installed_path(path, self.install_prefixes) for path in paths):
                del sys.modules[name]
        importlib.invalidate_caches()
        linecache.clearcache()

    def _is_healthy(self) -> bool:
        try:
            java_context = self.context._jsc
            return java_context is not None and not java_context.sc().isStopped()
        except Exception:
            return False

    def shut_down(self) -> None:
        try:
            self.original_context_stop(self.context)
        except Exception:
            traceback.print_exc()


@contextlib.contextmanager
def _collect_job_exit_handlers(
    install_prefixes: tuple[str, ...],
) -> Iterator[list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]]:
    """Collect the atexit handlers that the job's own code registers, to run after the job.

    Handlers registered by installed packages stay with the worker, because those packages
    stay loaded for later jobs.
    """
    handlers: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
    original_register, original_unregister = atexit.register, atexit.unregister

    def register(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        caller = sys._getframe(1).f_code.co_filename
        if _is_installed_path(caller, install_prefixes) or not os.path.isabs(caller):
            return original_register(function, *args, **kwargs)
        handlers.append((function, args, kwargs))
        return function

    def unregister(function: Callable[..., Any]) -> None:
        handlers[:] = [handler for handler in handlers if handler[0] != function]
        original_unregister(function)

    atexit.register = register  # type: ignore[assignment]
    atexit.unregister = unregister  # type: ignore[assignment]
    try:
        yield handlers
    finally:
        atexit.register = original_register  # type: ignore[assignment]
        atexit.unregister = original_unregister  # type: ignore[assignment]


_SAVED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM")
    if hasattr(signal, name)
)


@dataclass
class _LoggerState:
    level: int
    handlers: list[logging.Handler]
    propagate: bool
    disabled: bool


@dataclass
class _ProcessState:
    """Interpreter state that a spark job may change and the worker restores afterwards."""

    environ: dict[str, str]
    cwd: str
    argv: list[str]
    path: list[str]
    main_module: types.ModuleType | None
    streams: tuple[Any, Any, Any]
    excepthook: Callable[..., Any]
    recursion_limit: int
    dont_write_bytecode: bool
    signal_handlers: dict[int, Any]
    logging_disable: int
    loggers: dict[str, _LoggerState] = field(default_factory=dict)

    @classmethod
    def capture(cls) -> _ProcessState:
        loggers = {"": _capture_logger(logging.root)}
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if isinstance(logger, logging.Logger):
                loggers[name] = _capture_logger(logger)
        return cls(
            environ=dict(os.environ),
            cwd=os.getcwd(),
            argv=list(sys.argv),
            path=list(sys.path),
            main_module=sys.modules.get("__main__"),
            streams=(sys.stdin, sys.stdout, sys.stderr),
            excepthook=sys.excepthook,
            recursion_limit=sys.getrecursionlimit(),
            dont_write_bytecode=sys.dont_write_bytecode,
            signal_handlers={sig: signal.getsignal(sig) for sig in _SAVED_SIGNALS},
            logging_disable=logging.root.manager.disable,
            loggers=loggers,
        )

    def restore(self) -> None:
        os.environ.clear()
        os.environ.update(self.environ)
        time.tzset()
        os.chdir(self.cwd)
        sys.argv = list(self.argv)
        sys.path[:] = self.path
        if self.main_module is not None:
            sys.modules["__main__"] = self.main_module
        sys.stdin, sys.stdout, sys.stderr = self.streams
        sys.excepthook = self.excepthook
        sys.setrecursionlimit(self.recursion_limit)
        sys.dont_write_bytecode = self.dont_write_bytecode
        if hasattr(signal, "alarm"):
            signal.alarm(0)
        for sig, handler in self.signal_handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
        logging.disable(self.logging_disable)
        self._restore_loggers()

    def _restore_loggers(self) -> None:
        """Undo the job's logging set-up, except on loggers of installed packages it imported."""
        current = {"": logging.root}
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if isinstance(logger, logging.Logger):
                current[name] = logger
        for name, logger in current.items():
            saved = self.loggers.get(name)
            if saved is None:
                if _belongs_to_loaded_package(name):
                    continue
                saved = _LoggerState(logging.NOTSET, [], True, False)
            for handler in logger.handlers:
                if handler not in saved.handlers:
                    with contextlib.suppress(Exception):
                        handler.close()
            logger.handlers = list(saved.handlers)
            logger.setLevel(saved.level)
            logger.propagate = saved.propagate
            logger.disabled = saved.disabled


def _capture_logger(logger: logging.Logger) -> _LoggerState:
    return _LoggerState(logger.level, list(logger.handlers), logger.propagate, logger.disabled)


def _belongs_to_loaded_package(logger_name: str) -> bool:
    """Tell whether a logger is named after a module that is still loaded, as `__name__`
    loggers of installed packages are. Loggers of the job's dropped modules are not."""
    parts = logger_name.split(".")
    for length in range(len(parts), 0, -1):
        prefix = ".".join(parts[:length])
        if prefix != "__main__" and prefix in sys.modules:
            return True
    return False

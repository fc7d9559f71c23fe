"""Run one SageMaker training or processing job as local processes.

Each instance of a job gets its own folder in place of the container's `/opt/ml`
(path remapping, which works on Linux and macOS alike):

    <workspace>/jobs/<job-name>/<host>/opt/ml/...

The job's processes see that folder through `SAGEMAKER_BASE_DIR` and the `SM_*` variables
(training) or through their arguments, where every `/opt/ml/...` path is rewritten to it
(processing). Inputs are downloaded from the embedded S3 before the entry point starts, and
outputs are uploaded after it ends, as SageMaker does.
"""

from __future__ import annotations

import datetime
import functools
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.local import horovod_jobs
from harness.local.embedded import EmbeddedAWS, split_s3_uri
from harness.local.processes import die_with_parent, forget_processes, record_processes

# First characters of the failure file that SageMaker keeps as FailureReason / ExitMessage.
FAILURE_REASON_CHARS = 1024
# How long a reader may go without a new line after its processes ended, before it is left.
READER_IDLE_SECONDS = 5.0

LineSink = Callable[[str, str], None]
"""Receives (host, line) for every line a job's processes print."""


@dataclass
class JobResult:
    """The outcome of a finished job: its status, reason, metrics and log."""

    name: str
    status: str  # Completed | Failed | Stopped
    failure_reason: str = ""
    started: float = 0.0
    ended: float = 0.0
    log_path: Path | None = None
    metrics: dict[str, list[float]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)

    def log_tail(self, lines: int = 20) -> list[str]:
        if self.log_path is None or not self.log_path.exists():
            return []
        return self.log_path.read_text(errors="replace").splitlines()[-lines:]


class JobInterrupted(Exception):
    """The user interrupted a job; its processes have been ended."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def remap_path(value: str, host_root: Path) -> str:
    """Rewrite a container path (`/opt/ml/...`, also after `--flag=`) into the host folder."""
    prefix, sep, rest = value.partition("=")
    if sep and rest.startswith("/opt/ml"):
        return f"{prefix}={remap_path(rest, host_root)}"
    if value == "/opt/ml" or value.startswith("/opt/ml/"):
        return str(host_root) + value[len("/opt/ml") :]
    return value


def _download_prefix(
    aws: EmbeddedAWS, uri: str, local_dir: Path, shard: tuple[int, int] | None = None
) -> list[str]:
    """Download every object under the S3 prefix `uri` into `local_dir`.

    With `shard=(index, count)` only every count-th object starting at index is taken, which
    is how `ShardedByS3Key` hands each instance about 1/count of the objects.
    """
    bucket, prefix = split_s3_uri(uri)
    entries = aws.list_object_entries(uri)
    objects = [key for key, _, _ in entries]
    etags = {key: etag for key, _, etag in entries}
    if shard is not None:
        index, count = shard
        objects = objects[index::count]
    local_dir.mkdir(parents=True, exist_ok=True)
    downloads = []
    for key in objects:
        if key == prefix:
            relative = key.rsplit("/", 1)[-1]
        else:
            relative = key[len(prefix) :].lstrip("/")
        downloads.append((bucket, key, local_dir / relative, etags[key]))
    aws.download_all(downloads)
    return objects


def deterministic_tar(folder: Path, target: Path) -> None:
    """Write `folder`'s files into a gzip tarball whose bytes depend only on their content."""
    import gzip

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.size = path.stat().st_size
            info.mtime = 0
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buffer.getvalue())
    os.replace(partial, target)


class Launcher(Protocol):
    """Runs one job process in an already started interpreter (`harness watch`'s warm pool).

    `kind` is "training" (the sagemaker-training toolkit's start), "spark" (a PySpark
    processing script) or "python" (another processing script). `run` returns the exit code
    the cold process would have returned; setting `stop` ends that job alone. Jobs of kinds
    training and python may run at once, one per instance of a job.
    """

    def run(
        self,
        kind: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        on_line: Callable[[str], None],
        timeout: float,
        stop: threading.Event | None = None,
    ) -> int: ...

    def stop_job(self) -> None: ...

    def prestart(self, kinds: Iterable[str], interpreter: str, env: dict[str, str]) -> None: ...


def launcher_kind(request: dict[str, Any]) -> str:
    """Return the kind of warm worker that runs a CreateTrainingJob or CreateProcessingJob
    request: training, spark (an `smspark-submit` entry point) or python."""
    if "AlgorithmSpecification" in request:
        return "training"
    entrypoint = request["AppSpecification"]["ContainerEntrypoint"]
    return "spark" if entrypoint[0] == "smspark-submit" else "python"


class _ProcessGroup:
    """Child processes of one job, each in its own session so that all can be ended."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.readers: list[threading.Thread] = []
        self.lines_read = 0

    def start(
        self,
        command: Sequence[str],
        env: dict[str, str],
        cwd: Path,
        host: str,
        log: io.TextIOBase,
        log_lock: threading.Lock,
        sink: LineSink,
        metric_patterns: list[tuple[str, re.Pattern[str]]],
        metrics: dict[str, list[float]],
        split_line: Callable[[str], tuple[str, str]] | None = None,
    ) -> None:
        """Start `command` and log its output lines as `host`'s.

        `split_line`, when given, returns the (host, text) of each line instead, for a process
        such as horovodrun whose output interleaves several hosts.
        """
        process = subprocess.Popen(
            list(command),
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.processes.append(process)

        def read() -> None:
            assert process.stdout is not None
            for raw in iter(process.stdout.readline, b""):
                self.lines_read += 1
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                line_host, line = split_line(line) if split_line else (host, line)
                with log_lock:
                    log.write(f"[{line_host}] {line}\n")
                    log.flush()
                    _collect_metrics(line, metric_patterns, metrics)
                sink(line_host, line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        self.readers.append(reader)

    def wait(self, deadline: float, stop: threading.Event | None = None) -> tuple[list[int], bool]:
        """Wait for every process; end all of them when one fails, the deadline passes or
        `stop` is set.

        Returns the exit codes and whether the deadline was reached.
        """
        timed_out = False
        cut_short: set[int] = set()
        while True:
            codes = [p.poll() for p in self.processes]
            if all(code is not None for code in codes):
                break
            if (stop and stop.is_set()) or time.monotonic() > deadline:
                timed_out = not (stop and stop.is_set())
                cut_short.update(i for i, code in enumerate(codes) if code is None)
                self.terminate()
            elif any(code not in (None, 0) for code in codes):
                # One instance failed: SageMaker ends the whole job.
                self.terminate()
            time.sleep(0.05)
        self.drain()
        # A process that catches SIGTERM can exit 0 (horovodrun does) though it did not run to
        # its end, so its code becomes -SIGTERM, as on the warm path.
        return [
            -signal.SIGTERM if i in cut_short and code == 0 else int(code)
            for i, code in enumerate(codes)
            if code is not None
        ], timed_out

    def drain(self) -> None:
        """Wait until the readers have handled every line the processes wrote.

        A reader can lag behind its process (a tuning job reports each objective value), and
        the lines it has not read yet hold the last metrics. It is waited for while it makes
        progress, and given up after READER_IDLE_SECONDS without a new line: a pipe that an
        orphaned grandchild keeps open never ends.
        """
        for reader in self.readers:
            while reader.is_alive():
                before = self.lines_read
                reader.join(timeout=READER_IDLE_SECONDS)
                if self.lines_read == before:
                    break

    def terminate(self, grace_seconds: float = 5.0) -> None:
        for process in self.processes:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        end = time.monotonic() + grace_seconds
        for process in self.processes:
            remaining = max(0.0, end - time.monotonic())
            try:
                process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _read_reason(path: Path) -> str:
    if path.exists():
        return path.read_text(errors="replace")[:FAILURE_REASON_CHARS].strip()
    return ""


def _run_warm(
    launcher: Launcher,
    kind: str,
    hosts: list[str],
    command_for_host: Callable[[str, Path], tuple[list[str], dict[str, str], Path]],
    job_dir: Path,
    log: io.TextIOBase,
    sink: LineSink,
    patterns: list[tuple[str, re.Pattern[str]]],
    metrics: dict[str, list[float]],
    max_runtime_seconds: int,
    job_stop: threading.Event | None = None,
) -> tuple[list[int], bool]:
    """Run each host's process in the warm pool, side by side, as the cold path does.

    When one instance fails or `job_stop` is set, every instance is stopped, as SageMaker
    stops the whole job.
    """
    log_lock = threading.Lock()
    stop = threading.Event()
    codes: dict[str, int] = {}
    errors: list[BaseException] = []
    started = time.monotonic()

    def run_host(host: str) -> None:
        def on_line(line: str) -> None:
            with log_lock:
                log.write(f"[{host}] {line}\n")
                log.flush()
                _collect_metrics(line, patterns, metrics)
            sink(host, line)

        try:
            command, env, cwd = command_for_host(host, job_dir / host / "opt" / "ml")
            code = launcher.run(
                kind, command, env, cwd, on_line, float(max_runtime_seconds), stop=stop
            )
        except BaseException as error:
            errors.append(error)
            stop.set()
            return
        codes[host] = code
        if code != 0:
            stop.set()

    threads = [
        threading.Thread(target=run_host, args=(host,), name=f"warm-{host}", daemon=True)
        for host in hosts
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.1)
                if job_stop is not None and job_stop.is_set():
                    stop.set()
    except BaseException:
        # Ctrl-C: end every instance before the interrupt goes on.
        stop.set()
        for thread in threads:
            thread.join()
        raise
    if errors:
        raise errors[0]
    results = [codes[host] for host in hosts]
    timed_out = any(results) and time.monotonic() - started >= max_runtime_seconds
    return results, timed_out


def _collect_metrics(
    line: str, patterns: list[tuple[str, re.Pattern[str]]], metrics: dict[str, list[float]]
) -> None:
    for name, pattern in patterns:
        match = pattern.search(line)
        if match:
            try:
                metrics.setdefault(name, []).append(float(match.group(1)))
            except (ValueError, IndexError):
                pass


def _run_processes(
    job_dir: Path,
    hosts: list[str],
    command_for_host: Callable[[str, Path], tuple[list[str], dict[str, str], Path]],
    max_runtime_seconds: int,
    sink: LineSink,
    metric_definitions: Sequence[dict[str, str]] = (),
    launcher: Launcher | None = None,
    kind: str = "python",
    stop: threading.Event | None = None,
    split_line: Callable[[str], tuple[str, str]] | None = None,
) -> tuple[list[int], bool, dict[str, list[float]], Path]:
    log_path = job_dir / "job.log"
    patterns = [(d["Name"], re.compile(d["Regex"])) for d in metric_definitions]
    metrics: dict[str, list[float]] = {}
    group = _ProcessGroup()
    log_lock = threading.Lock()
    with open(log_path, "w") as log:
        # One JVM runs one Spark job at a time, so a Spark job of several instances runs cold.
        if launcher is not None and (len(hosts) == 1 or kind != "spark"):
            codes, timed_out = _run_warm(
                launcher,
                kind,
                hosts,
                command_for_host,
                job_dir,
                log,
                sink,
                patterns,
                metrics,
                max_runtime_seconds,
                stop,
            )
            return codes, timed_out, metrics, log_path
        try:
            for host in hosts:
                command, env, cwd = command_for_host(host, job_dir / host / "opt" / "ml")
                group.start(
                    command, env, cwd, host, log, log_lock, sink, patterns, metrics, split_line
                )
            record_processes(job_dir, [p.pid for p in group.processes])
            codes, timed_out = group.wait(time.monotonic() + max_runtime_seconds, stop)
        except BaseException:
            # Ctrl-C or any error here: no child process may outlive the job.
            group.terminate()
            # The readers write to the log until their pipes close; let them finish first.
            group.drain()
            raise
        finally:
            forget_processes(job_dir)
    return codes, timed_out, metrics, log_path


def _fresh_job_dir(workspace: Path, job_name: str) -> Path:
    job_dir = workspace / "jobs" / job_name
    if job_dir.exists():
        shutil.rmtree(job_dir)
    job_dir.mkdir(parents=True)
    return job_dir


def run_training_job(
    aws: EmbeddedAWS,
    request: dict[str, Any],
    base_env: dict[str, str],
    sink: LineSink,
    launcher: Launcher | None = None,
    stop: threading.Event | None = None,
) -> JobResult:
    """Run a CreateTrainingJob request through the sagemaker-training toolkit.

    The toolkit is the program that SageMaker's framework containers start: it parses
    `/opt/ml/input/config`, downloads `sagemaker_submit_directory` from S3 (here the
    embedded one), sets the `SM_*` variables, passes hyperparameters as `--key value`
    arguments, runs the entry point and writes `/opt/ml/output/failure` when it fails.
    Setting `stop` ends the job as StopTrainingJob does: its status becomes Stopped.
    """
    name = request["TrainingJobName"]
    job_dir = _fresh_job_dir(aws.workspace, name)
    resources = request["ResourceConfig"]
    hosts = [f"algo-{i}" for i in range(1, int(resources["InstanceCount"]) + 1)]
    result = JobResult(name=name, status="InProgress", started=time.time())

    aws.call("CreateTrainingJob", **request)
    aws.patch_job(
        "training",
        name,
        training_job_status="InProgress",
        secondary_status="Training",
        algorithm_specification=request["AlgorithmSpecification"],
        training_start_time=_now(),
        final_metric_data_list=[],
    )

    channels = request.get("InputDataConfig", [])
    for host in hosts:
        root = job_dir / host / "opt" / "ml"
        config_dir = root / "input" / "config"
        config_dir.mkdir(parents=True)
        for folder in ("model", "output/data", "code", "output/intermediate"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        # The SageMaker platform writes every hyperparameter value as a string.
        hyperparameters = {k: str(v) for k, v in request.get("HyperParameters", {}).items()}
        (config_dir / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2))
        (config_dir / "resourceconfig.json").write_text(
            json.dumps(
                {
                    "current_host": host,
                    "current_instance_type": resources["InstanceType"],
                    "current_group_name": "homogeneousCluster",
                    "hosts": hosts,
                    "instance_groups": [
                        {
                            "instance_group_name": "homogeneousCluster",
                            "instance_type": resources["InstanceType"],
                            "hosts": hosts,
                        }
                    ],
                    "network_interface_name": "eth0",
                },
                indent=2,
            )
        )
        input_config = {}
        for channel in channels:
            source = channel["DataSource"]["S3DataSource"]
            distribution = source.get("S3DataDistributionType", "FullyReplicated")
            input_config[channel["ChannelName"]] = {
                "TrainingInputMode": channel.get("InputMode", "File"),
                "S3DistributionType": distribution,
                "RecordWrapperType": channel.get("RecordWrapperType", "None"),
                **({"ContentType": channel["ContentType"]} if "ContentType" in channel else {}),
            }
            shard = None
            if distribution == "ShardedByS3Key":
                shard = (hosts.index(host), len(hosts))
            _download_prefix(
                aws, source["S3Uri"], root / "input" / "data" / channel["ChannelName"], shard
            )
        (config_dir / "inputdataconfig.json").write_text(json.dumps(input_config, indent=2))

    def command_for_host(host: str, root: Path) -> tuple[list[str], dict[str, str], Path]:
        env = {
            **base_env,
            **request.get("Environment", {}),
            "SAGEMAKER_BASE_DIR": str(root),
            # Skips the toolkit's wait for DNS names of algo-N, which only a cluster has.
            "SM_STUDIO_LOCAL_MODE": "true",
            "TRAINING_JOB_NAME": name,
            "TRAINING_JOB_ARN": f"arn:aws:sagemaker:{aws.region}:123456789012:training-job/{name}",
        }
        command = [sys.executable, "-m", "sagemaker_training.cli.train"]
        return command, env, root

    # A distributed job runs as one horovodrun process that starts every rank.
    distributed = horovod_jobs.rank_count(request) > 1
    process_hosts, run_command, split_line = hosts, command_for_host, None
    if distributed:
        _, processes_per_host = horovod_jobs.mpi_settings(request["HyperParameters"])
        process_hosts = hosts[:1]
        split_line = functools.partial(
            horovod_jobs.split_rank_line, hosts=hosts, processes_per_host=processes_per_host
        )
        # NOTE: distributed jobs always run cold: the warm pool forks one process per host,
        # and horovodrun must start the ranks itself.
        launcher = None

        def horovodrun_for_job(host: str, root: Path) -> tuple[list[str], dict[str, str], Path]:
            _, env, _ = command_for_host(host, root)
            # Each rank points SAGEMAKER_BASE_DIR at its own host's folder.
            del env["SAGEMAKER_BASE_DIR"]
            return horovod_jobs.horovodrun_command(job_dir, hosts, processes_per_host), env, job_dir

        run_command = horovodrun_for_job

    try:
        codes, timed_out, metrics, log_path = _run_processes(
            job_dir,
            process_hosts,
            run_command,
            int(request["StoppingCondition"]["MaxRuntimeInSeconds"]),
            sink,
            request["AlgorithmSpecification"].get("MetricDefinitions", []),
            launcher,
            "training",
            stop,
            split_line,
        )
    except BaseException as error:
        if distributed:
            horovod_jobs.end_rank_groups(job_dir)
        result.status, result.ended = "Stopped", time.time()
        aws.patch_job(
            "training",
            name,
            training_job_status="Stopped",
            secondary_status="Stopped",
            failure_reason=f"Interrupted: {type(error).__name__}",
            training_end_time=_now(),
        )
        raise
    if distributed:
        horovod_jobs.end_rank_groups(job_dir)
    result.metrics, result.log_path, result.ended = metrics, log_path, time.time()

    root = job_dir / hosts[0] / "opt" / "ml"
    if stop is not None and stop.is_set() and any(codes):
        # NOTE: SageMaker uploads what a stopped job saved in /opt/ml/model; here a stopped
        # job keeps no model.
        result.status = "Stopped"
    elif timed_out:
        result.status = "Stopped"
        result.failure_reason = (
            f"MaxRuntimeExceeded: the job ran longer than StoppingCondition.MaxRuntimeInSeconds="
            f"{request['StoppingCondition']['MaxRuntimeInSeconds']}"
        )
    elif any(codes):
        result.status = "Failed"
        reasons = [_read_reason(job_dir / h / "opt" / "ml" / "output" / "failure") for h in hosts]
        if distributed:
            reasons.insert(0, horovod_jobs.first_rank_failure(job_dir)[:FAILURE_REASON_CHARS])
        result.failure_reason = next((r for r in reasons if r), "") or (
            f"AlgorithmError: the entry point exited with code {max(codes)}"
        )
    else:
        result.status = "Completed"
        output_path = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        model_uri = f"{output_path}/{name}/output/model.tar.gz"
        output_uri = f"{output_path}/{name}/output/output.tar.gz"
        # Only the first host's model and output are kept, as in SageMaker.
        deterministic_tar(root / "model", job_dir / "model.tar.gz")
        deterministic_tar(root / "output" / "data", job_dir / "output.tar.gz")
        aws.put_file(job_dir / "model.tar.gz", model_uri)
        aws.put_file(job_dir / "output.tar.gz", output_uri)
        result.outputs = {"model": model_uri, "output": output_uri}
        tensorboard = request.get("TensorBoardOutputConfig")
        if tensorboard is not None:
            local = Path(
                remap_path(tensorboard.get("LocalPath", "/opt/ml/output/tensorboard"), root)
            )
            if local.is_dir():
                aws.put_tree(local, tensorboard["S3OutputPath"])

    final_metrics = [
        {"MetricName": metric, "Value": values[-1], "Timestamp": _now()}
        for metric, values in metrics.items()
        if values
    ]
    patch: dict[str, Any] = {
        "training_job_status": result.status,
        "secondary_status": result.status,
        "training_end_time": _now(),
        "final_metric_data_list": final_metrics,
    }
    if result.failure_reason:
        patch["failure_reason"] = result.failure_reason
    if result.status == "Completed":
        patch["model_artifacts"] = {"S3ModelArtifacts": result.outputs["model"]}
    aws.patch_job("training", name, **patch)
    return result


def run_processing_job(
    aws: EmbeddedAWS,
    request: dict[str, Any],
    base_env: dict[str, str],
    sink: LineSink,
    launcher: Launcher | None = None,
) -> JobResult:
    """Run a CreateProcessingJob request, one process per instance.

    The container's entry point (`ContainerEntrypoint`) is a launcher and a script inside
    `/opt/ml/processing/...`. Locally the script runs under this Python, which carries the same
    libraries as the image, and PySpark runs in local mode.
    """
    name = request["ProcessingJobName"]
    job_dir = _fresh_job_dir(aws.workspace, name)
    cluster = request["ProcessingResources"]["ClusterConfig"]
    hosts = [f"algo-{i}" for i in range(1, int(cluster["InstanceCount"]) + 1)]
    result = JobResult(name=name, status="InProgress", started=time.time())

    aws.call("CreateProcessingJob", **request)
    aws.patch_job(
        "processing", name, processing_job_status="InProgress", processing_start_time=_now()
    )

    outputs = request.get("ProcessingOutputConfig", {}).get("Outputs", [])
    for host in hosts:
        root = job_dir / host / "opt" / "ml"
        (root / "config").mkdir(parents=True)
        (root / "output").mkdir(parents=True)
        (root / "config" / "processingjobconfig.json").write_text(
            json.dumps(request, indent=2, default=str)
        )
        (root / "config" / "resourceconfig.json").write_text(
            json.dumps({"current_host": host, "hosts": hosts}, indent=2)
        )
        for processing_input in request.get("ProcessingInputs", []):
            source = processing_input["S3Input"]
            shard = None
            if source.get("S3DataDistributionType") == "ShardedByS3Key":
                shard = (hosts.index(host), len(hosts))
            _download_prefix(
                aws, source["S3Uri"], Path(remap_path(source["LocalPath"], root)), shard
            )
        # SageMaker creates every output folder before the entry point starts.
        for output in outputs:
            Path(remap_path(output["S3Output"]["LocalPath"], root)).mkdir(
                parents=True, exist_ok=True
            )

    app = request["AppSpecification"]

    def command_for_host(host: str, root: Path) -> tuple[list[str], dict[str, str], Path]:
        entrypoint = [remap_path(part, root) for part in app["ContainerEntrypoint"]]
        arguments = [remap_path(part, root) for part in app.get("ContainerArguments", [])]
        # The first element launches the script in the image (python3, smspark-submit).
        command = [sys.executable, *entrypoint[1:], *arguments]
        env = {**base_env, **request.get("Environment", {}), "SAGEMAKER_BASE_DIR": str(root)}
        return command, env, root / "processing"

    try:
        codes, timed_out, metrics, log_path = _run_processes(
            job_dir,
            hosts,
            command_for_host,
            int(request["StoppingCondition"]["MaxRuntimeInSeconds"]),
            sink,
            (),
            launcher,
            launcher_kind(request),
        )
    except BaseException as error:
        result.status, result.ended = "Stopped", time.time()
        aws.patch_job(
            "processing",
            name,
            processing_job_status="Stopped",
            exit_message=f"Interrupted: {type(error).__name__}",
            processing_end_time=_now(),
        )
        raise
    result.metrics, result.log_path, result.ended = metrics, log_path, time.time()

    if timed_out:
        result.status = "Stopped"
        result.failure_reason = (
            "MaxRuntimeExceeded: the job ran longer than StoppingCondition.MaxRuntimeInSeconds="
            f"{request['StoppingCondition']['MaxRuntimeInSeconds']}"
        )
    elif any(codes):
        result.status = "Failed"
        messages = [_read_reason(job_dir / h / "opt" / "ml" / "output" / "message") for h in hosts]
        result.failure_reason = next((m for m in messages if m), "") or (
            f"AlgorithmError: the entry point exited with code {max(codes)}"
        )
    else:
        result.status = "Completed"
        for output in outputs:
            target = output["S3Output"]["S3Uri"].rstrip("/")
            for host in hosts:
                local = Path(
                    remap_path(output["S3Output"]["LocalPath"], job_dir / host / "opt" / "ml")
                )
                aws.put_tree(local, target)
            result.outputs[output["OutputName"]] = target

    patch: dict[str, Any] = {"processing_job_status": result.status, "processing_end_time": _now()}
    if result.failure_reason:
        patch["failure_reason"] = result.failure_reason
        patch["exit_message"] = result.failure_reason
    aws.patch_job("processing", name, **patch)
    return result

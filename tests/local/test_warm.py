"""Warm workers against real TensorFlow, Spark and the sagemaker-training toolkit.

One pool serves the whole module, so each worker kind starts once, except where a test
breaks a worker on purpose. No test asserts a duration.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.local.warm import WarmPool

PYTHON = sys.executable
TRAIN_COMMAND = [PYTHON, "-m", "sagemaker_training.cli.train"]


@pytest.fixture(scope="module")
def pool_holder() -> Iterator[dict[str, WarmPool]]:
    holder: dict[str, WarmPool] = {}
    yield holder
    if "pool" in holder:
        holder["pool"].close()


@pytest.fixture
def pool(pool_holder: dict[str, WarmPool]) -> WarmPool:
    """Return the module's pool, or a new one when a test has closed it."""
    if "pool" not in pool_holder or pool_holder["pool"].closed:
        pool_holder["pool"] = WarmPool()
    return pool_holder["pool"]


def job_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SM_")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "SPARK_LOCAL_IP": "127.0.0.1"})
    env.update(extra)
    return env


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def run_warm(
    pool: WarmPool, kind: str, argv: list[str], cwd: Path, timeout: float = 120, **env: str
) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = pool.run(kind, argv, job_env(**env), cwd, lines.append, timeout)
    return code, lines


def run_cold(argv: list[str], cwd: Path, **env: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        argv,
        env=job_env(**env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=300,
    )
    return done.returncode, done.stdout.decode().splitlines()


def printed_value(lines: list[str], name: str) -> str:
    """Return the value the script printed as `name=value`."""
    values = [line.split("=", 1)[1] for line in lines if line.startswith(f"{name}=")]
    assert len(values) == 1, f"expected one {name}= line in {lines}"
    return values[0]


# -- training: equivalence with the cold toolkit ----------------------------------------------

PROBE = """\
import json, logging, os, sys
from pathlib import Path
from typing import Any
import helper

record = {
    "argv": sys.argv,
    "sm_env": {k: v for k, v in os.environ.items() if k.startswith("SM_")},
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "file": __file__,
    "leaked_global": list(helper.CALLS),
    "leaked_env": os.environ.get("PROBE_LEAK"),
}
helper.CALLS.append(1)
os.environ["PROBE_LEAK"] = "set by an earlier run"
Path(os.environ["SM_MODEL_DIR"], "probe.json").write_text(json.dumps(record))
print("epoch=1 train:loss=0.5", flush=True)
# A new interpreter's root logger drops INFO and prints WARNING without a format.
logging.getLogger("probe").info("probe info")
logging.getLogger("probe").warning("probe warning")
if os.environ.get("SM_HP_FAIL") == "yes":
    sys.exit(3)
"""


def training_root(tmp_path: Path, name: str, hyperparameters: dict[str, str]) -> Path:
    """Lay out an /opt/ml folder as jobs.run_training_job does, with the code as a tarball."""
    source = io.BytesIO()
    with tarfile.open(fileobj=source, mode="w:gz") as tar:
        for member, text in {"train/probe.py": PROBE, "train/helper.py": "CALLS = []\n"}.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tarball = tmp_path / name / "sourcedir.tar.gz"
    tarball.parent.mkdir(parents=True)
    tarball.write_bytes(source.getvalue())

    root = tmp_path / name / "opt" / "ml"
    config = root / "input" / "config"
    config.mkdir(parents=True)
    for folder in ("model", "output/data", "code", "input/data/train"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "input" / "data" / "train" / "part-0.parquet").write_bytes(b"a")
    hyperparameters = {
        **hyperparameters,
        "sagemaker_program": "train/probe.py",
        "sagemaker_submit_directory": str(tarball),
        "sagemaker_region": "us-east-1",
    }
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "resourceconfig.json").write_text(
        json.dumps(
            {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}
        )
    )
    (config / "inputdataconfig.json").write_text(
        json.dumps(
            {"train": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}}
        )
    )
    return root


def training_env(root: Path) -> dict[str, str]:
    return {
        "SAGEMAKER_BASE_DIR": str(root),
        "SM_STUDIO_LOCAL_MODE": "true",
        "TRAINING_JOB_NAME": "warm-probe",
    }


def normalized(value: object, root: Path) -> object:
    """Replace the job folder (the parent of opt/ml) in every string, so that two job folders
    compare equal."""
    return json.loads(json.dumps(value).replace(str(root.parents[1]), "<job>"))


HYPERPARAMETERS = {"epochs": "3", "learning_rate": "0.01", "hidden_units": "128,64"}


def test_training_matches_cold_toolkit(pool: WarmPool, tmp_path: Path) -> None:
    cold_root = training_root(tmp_path, "cold", HYPERPARAMETERS)
    cold_code, cold_lines = run_cold(TRAIN_COMMAND, cold_root, **training_env(cold_root))
    assert cold_code == 0, cold_lines
    cold = json.loads((cold_root / "model" / "probe.json").read_text())

    warm_root = training_root(tmp_path, "warm", HYPERPARAMETERS)
    warm_code, warm_lines = run_warm(
        pool, "training", TRAIN_COMMAND, warm_root, **training_env(warm_root)
    )
    assert warm_code == 0, warm_lines
    warm = json.loads((warm_root / "model" / "probe.json").read_text())

    assert normalized(warm["argv"], warm_root) == normalized(cold["argv"], cold_root)
    assert normalized(warm["sm_env"], warm_root) == normalized(cold["sm_env"], cold_root)
    assert normalized(warm["env"], warm_root) == normalized(cold["env"], cold_root)
    assert normalized(warm["cwd"], warm_root) == normalized(cold["cwd"], cold_root)
    assert normalized(warm["file"], warm_root) == normalized(cold["file"], cold_root)
    assert (warm_root / "output" / "success").exists()
    assert not (warm_root / "output" / "failure").exists()
    assert (warm_root / "code" / "train" / "probe.py").exists()
    assert "epoch=1 train:loss=0.5" in warm_lines
    for line in ("probe info", "probe warning"):
        assert (line in warm_lines) == (line in cold_lines), line
    assert any("Reporting training SUCCESS" in line for line in warm_lines)


def test_training_rerun_is_isolated(pool: WarmPool, tmp_path: Path) -> None:
    for run in range(2):
        root = training_root(tmp_path, f"run-{run}", HYPERPARAMETERS)
        code, lines = run_warm(pool, "training", TRAIN_COMMAND, root, **training_env(root))
        assert code == 0, lines
        record = json.loads((root / "model" / "probe.json").read_text())
        assert record["leaked_global"] == []
        assert record["leaked_env"] is None


def test_training_failure_like_toolkit(pool: WarmPool, tmp_path: Path) -> None:
    root = training_root(tmp_path, "failing", {**HYPERPARAMETERS, "fail": "yes"})
    code, lines = run_warm(pool, "training", TRAIN_COMMAND, root, **training_env(root))

    # The toolkit exits 1 for any failure of the user script and writes its own reason.
    assert code == 1, lines
    failure = (root / "output" / "failure").read_text()
    assert failure.startswith("ExecuteUserScriptError:\nExitCode 3\n")
    assert f'Command "{PYTHON} -- train/probe.py' in failure
    assert not (root / "output" / "success").exists()


# -- python and spark: exit codes and output ---------------------------------------------------

EXIT_CASES = {
    "success": "print('done')\n",
    "exit_code": "import sys\nprint('leaving')\nsys.exit(5)\n",
    "exit_message": "import sys\nsys.exit('invalid input: line 7')\n",
    "uncaught": "def fail():\n    raise ValueError('boom')\n\nfail()\n",
    "syntax_error": "print('never'\n",
}


@pytest.mark.parametrize("kind", ["python", "spark"])
def test_exit_status_matches_cold(pool: WarmPool, tmp_path: Path, kind: str) -> None:
    for name, source in EXIT_CASES.items():
        script = write(tmp_path / f"{name}.py", source)
        cold = run_cold([PYTHON, str(script), "arg"], tmp_path)
        warm = run_warm(pool, kind, [PYTHON, str(script), "arg"], tmp_path)
        # Spark logs its own warnings in the worker. Compare what the script printed.
        warm_lines = [line for line in warm[1] if " WARN " not in line]
        assert warm[0] == cold[0], f"{name}: {warm} != {cold}"
        assert warm_lines == cold[1], name


def test_missing_script_like_python(pool: WarmPool, tmp_path: Path) -> None:
    code, lines = run_warm(pool, "python", [PYTHON, str(tmp_path / "absent.py")], tmp_path)

    assert code == 2
    assert lines == [
        f"{PYTHON}: can't open file {str(tmp_path / 'absent.py')!r}: "
        "[Errno 2] No such file or directory"
    ]


MODULE = """\
import os, sys
print("argv=" + repr(sys.argv))
print("path0=" + sys.path[0])
print("name=" + __name__)
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("kind", ["python", "spark"])
def test_module_command_matches_cold(pool: WarmPool, tmp_path: Path, kind: str) -> None:
    write(tmp_path / "probe_module.py", MODULE)
    argv = [PYTHON, "-m", "probe_module", "3"]

    cold = run_cold(argv, tmp_path)
    warm = run_warm(pool, kind, argv, tmp_path)

    assert cold[0] == 3
    assert warm[0] == cold[0]
    assert [line for line in warm[1] if " WARN " not in line] == cold[1]


ORDERED_OUTPUT = """\
import sys
for index in range(100):
    stream = sys.stdout if index % 2 == 0 else sys.stderr
    print(f"line {index}", file=stream, flush=True)
print("no newline at the end", end="")
"""


@pytest.mark.parametrize("kind", ["python", "spark"])
def test_output_lines_in_order(pool: WarmPool, tmp_path: Path, kind: str) -> None:
    script = write(tmp_path / "ordered.py", ORDERED_OUTPUT)
    code, lines = run_warm(pool, kind, [PYTHON, str(script)], tmp_path)

    assert code == 0
    assert [line for line in lines if " WARN " not in line] == [
        *(f"line {index}" for index in range(100)),
        "no newline at the end",
    ]


# -- isolation between reruns ------------------------------------------------------------------

LEAKY_STEP = """\
import logging, os, sys
import numpy
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from shared import state

leaks = []
if state.CALLS:
    leaks.append("module global")
if "LEAKY_ENV" in os.environ:
    leaks.append("environment variable")
if logging.getLogger().handlers or logging.getLogger("shared.state").handlers:
    leaks.append("logging handlers")
if numpy.random.randint(1 << 30) == numpy.random.RandomState(7).randint(1 << 30):
    leaks.append("numpy random state")
state.CALLS.append(1)
os.environ["LEAKY_ENV"] = "1"
logging.basicConfig(stream=sys.stderr)
logging.getLogger("shared.state").addHandler(logging.StreamHandler(sys.stdout))
numpy.random.seed(7)
print("leaks=" + ",".join(leaks))
print("value=" + str(state.VALUE))
"""


@pytest.mark.parametrize("kind", ["python", "spark"])
def test_rerun_sees_no_earlier_state(pool: WarmPool, tmp_path: Path, kind: str) -> None:
    code_dir = tmp_path / "code"
    write(code_dir / "shared" / "__init__.py", "")
    write(code_dir / "shared" / "state.py", "CALLS = []\nVALUE = 1\n")
    script = write(code_dir / "step" / "step.py", LEAKY_STEP)

    first = run_warm(pool, kind, [PYTHON, str(script)], tmp_path)
    # An edited module must be imported afresh by the next run.
    write(code_dir / "shared" / "state.py", "CALLS = []\nVALUE = 2\n")
    second = run_warm(pool, kind, [PYTHON, str(script)], tmp_path)

    assert first[0] == 0, first[1]
    assert second[0] == 0, second[1]
    assert printed_value(second[1], "leaks") == ""
    assert printed_value(first[1], "value") == "1"
    assert printed_value(second[1], "value") == "2"
    assert "LEAKY_ENV" not in os.environ


# -- spark: one JVM, fresh session state, broken workers ---------------------------------------

SPARK_JOB = """\
import os, sys
from pyspark.sql import SparkSession

builder = SparkSession.builder.appName("probe")
if sys.argv[1] == "configured":
    builder = (
        builder.config("spark.sql.shuffle.partitions", "3")
        .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    )
spark = builder.getOrCreate()
print("application=" + spark.sparkContext.applicationId)
print("jvm=" + str(spark.sparkContext._gateway.proc.pid))
print("partitions=" + spark.conf.get("spark.sql.shuffle.partitions"))
print("views=" + ",".join(t.name for t in spark.catalog.listTables()))
spark.range(5).createOrReplaceTempView("numbers")
spark.range(5).cache().count()
output = os.path.join(sys.argv[2], "out")
spark.range(5).write.mode("overwrite").parquet(output)
print("success_marker=" + str(os.path.exists(os.path.join(output, "_SUCCESS"))))
spark.stop()
"""


def test_concurrent_forked_jobs_keep_output_apart(pool: WarmPool, tmp_path: Path) -> None:
    script = write(
        tmp_path / "instance.py",
        """\
        import sys, time
        for index in range(20):
            print(f"{sys.argv[1]} {index}", flush=True)
            time.sleep(0.02)
        sys.exit(int(sys.argv[2]))
        """,
    )
    results: dict[str, tuple[int, list[str]]] = {}

    def run_instance(host: str, code: str) -> None:
        results[host] = run_warm(pool, "python", [PYTHON, str(script), host, code], tmp_path)

    threads = [
        threading.Thread(target=run_instance, args=(host, code))
        for host, code in (("algo-1", "0"), ("algo-2", "4"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results["algo-1"] == (0, [f"algo-1 {index}" for index in range(20)])
    assert results["algo-2"] == (4, [f"algo-2 {index}" for index in range(20)])


def test_spark_reuses_jvm_with_fresh_session(pool: WarmPool, tmp_path: Path) -> None:
    script = write(tmp_path / "spark_job.py", SPARK_JOB)
    first = run_warm(pool, "spark", [PYTHON, str(script), "configured", str(tmp_path)], tmp_path)
    second = run_warm(pool, "spark", [PYTHON, str(script), "plain", str(tmp_path)], tmp_path)

    assert first[0] == 0, first[1]
    assert second[0] == 0, second[1]
    # spark.stop() in the first job did not end the JVM that the second job uses.
    assert printed_value(first[1], "application") == printed_value(second[1], "application")
    assert printed_value(first[1], "partitions") == "3"
    assert printed_value(second[1], "partitions") == "200"
    assert printed_value(second[1], "views") == ""
    assert printed_value(first[1], "success_marker") == "False"
    assert printed_value(second[1], "success_marker") == "True"


EDITED_UDF_STEP = """\
import os, sys, tempfile, zipfile
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pyspark.sql import SparkSession
from shared import state

spark = SparkSession.builder.getOrCreate()
# Ship the package to Spark's Python workers, as steps/common/spark.py does.
archive = os.path.join(tempfile.mkdtemp(), "shared.zip")
with zipfile.ZipFile(archive, "w") as zipped:
    for name in ("__init__.py", "state.py"):
        zipped.write(os.path.join(os.path.dirname(state.__file__), name), f"shared/{name}")
spark.sparkContext.addPyFile(archive)
values = spark.sparkContext.parallelize(range(4), 2).map(lambda _: state.VALUE).collect()
print("executor_values=" + ",".join(str(v) for v in values))
"""


def test_spark_workers_see_edited_module(pool: WarmPool, tmp_path: Path) -> None:
    code_dir = tmp_path / "code"
    write(code_dir / "shared" / "__init__.py", "")
    write(code_dir / "shared" / "state.py", "VALUE = 1\n")
    script = write(code_dir / "step" / "step.py", EDITED_UDF_STEP)

    first = run_warm(pool, "spark", [PYTHON, str(script)], tmp_path)
    write(code_dir / "shared" / "state.py", "VALUE = 22\n")
    second = run_warm(pool, "spark", [PYTHON, str(script)], tmp_path)

    assert first[0] == 0, first[1]
    assert second[0] == 0, second[1]
    assert printed_value(first[1], "executor_values") == "1,1,1,1"
    assert printed_value(second[1], "executor_values") == "22,22,22,22"


KILL_JVM = """\
import os, signal
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("application=" + spark.sparkContext.applicationId, flush=True)
os.kill(spark.sparkContext._gateway.proc.pid, signal.SIGKILL)
"""

APPLICATION_ID = """\
from pyspark.sql import SparkSession
print("application=" + SparkSession.builder.getOrCreate().sparkContext.applicationId)
"""

SLEEPER = """\
import time
print("sleeping", flush=True)
time.sleep(120)
"""

QUICK = "print('quick')\n"

COUNTER = """\
import time
for number in range(20):
    print(number, flush=True)
    time.sleep(0.05)
"""


def test_spark_worker_with_dead_jvm_is_replaced(pool: WarmPool, tmp_path: Path) -> None:
    kill_jvm = write(tmp_path / "kill_jvm.py", KILL_JVM)
    application = write(tmp_path / "application.py", APPLICATION_ID)

    killed = run_warm(pool, "spark", [PYTHON, str(kill_jvm)], tmp_path)
    after = run_warm(pool, "spark", [PYTHON, str(application)], tmp_path)

    # The script itself ended normally, and only the worker is unusable.
    assert killed[0] == 0, killed[1]
    assert after[0] == 0, after[1]
    assert printed_value(after[1], "application") != printed_value(killed[1], "application")


def test_timeout_replaces_spark_worker(pool: WarmPool, tmp_path: Path) -> None:
    script = write(tmp_path / "sleeper.py", SLEEPER)
    quick = write(tmp_path / "quick.py", QUICK)
    assert run_warm(pool, "spark", [PYTHON, str(quick)], tmp_path)[0] == 0
    (worker,) = pool.worker_pids()["spark"]
    lines: list[str] = []

    result = pool.run_job("spark", [PYTHON, str(script)], job_env(), tmp_path, lines.append, 1.5)

    assert result.timed_out
    assert result.code == -signal.SIGTERM
    assert "sleeping" in lines
    # The replacement starts in the background, and the next spark test waits for it.
    assert worker not in pool.worker_pids()["spark"]


def test_timeout_keeps_zygote(pool: WarmPool, tmp_path: Path) -> None:
    script = write(tmp_path / "sleeper.py", SLEEPER)
    quick = write(tmp_path / "quick.py", QUICK)
    assert run_warm(pool, "python", [PYTHON, str(quick)], tmp_path)[0] == 0
    zygotes = pool.worker_pids()["python"]
    lines: list[str] = []

    result = pool.run_job("python", [PYTHON, str(script)], job_env(), tmp_path, lines.append, 1.5)
    after = run_warm(pool, "python", [PYTHON, str(quick)], tmp_path)

    assert result.timed_out
    assert result.code == -signal.SIGTERM
    assert lines == ["sleeping"]
    assert after == (0, ["quick"])
    assert pool.worker_pids()["python"] == zygotes


def test_stop_job_from_another_thread(pool: WarmPool, tmp_path: Path) -> None:
    script = write(tmp_path / "sleeper.py", SLEEPER)
    sleeping = threading.Event()

    def on_line(line: str) -> None:
        if line == "sleeping":
            sleeping.set()

    stopper = threading.Thread(target=lambda: sleeping.wait(60) and pool.stop_job())
    stopper.start()
    result = pool.run_job("python", [PYTHON, str(script)], job_env(), tmp_path, on_line, 120)
    stopper.join()

    assert result.stopped
    assert not result.timed_out
    assert result.code == -signal.SIGTERM


def test_stop_event_ends_only_its_job(pool: WarmPool, tmp_path: Path) -> None:
    sleeper = write(tmp_path / "sleeper.py", SLEEPER)
    counter = write(tmp_path / "counter.py", COUNTER)
    stop = threading.Event()
    started = {"sleeping": threading.Event(), "0": threading.Event()}
    lines: dict[str, list[str]] = {"sleeper": [], "counter": []}
    results: dict[str, Any] = {}

    def run(name: str, script: Path, job_stop: threading.Event | None) -> None:
        def on_line(line: str) -> None:
            lines[name].append(line)
            if line in started:
                started[line].set()

        results[name] = pool.run_job(
            "python", [PYTHON, str(script)], job_env(), tmp_path, on_line, 120, job_stop
        )

    threads = [
        threading.Thread(target=run, args=("sleeper", sleeper, stop)),
        threading.Thread(target=run, args=("counter", counter, None)),
    ]
    for thread in threads:
        thread.start()
    assert started["sleeping"].wait(60)
    assert started["0"].wait(60)
    stop.set()
    for thread in threads:
        thread.join(60)

    assert results["sleeper"].stopped
    assert results["sleeper"].code == -signal.SIGTERM
    assert results["counter"].code == 0
    assert not results["counter"].stopped
    assert lines["counter"] == [str(number) for number in range(20)]


def test_prestarted_worker_runs_the_first_job(tmp_path: Path) -> None:
    quick = write(tmp_path / "quick.py", QUICK)
    with WarmPool() as pool:
        pool.prestart(["python"], PYTHON, job_env())
        deadline = time.monotonic() + 60
        while not pool.worker_pids()["python"] and time.monotonic() < deadline:
            time.sleep(0.05)
        prestarted = pool.worker_pids()["python"]
        assert len(prestarted) == 1

        assert run_warm(pool, "python", [PYTHON, str(quick)], tmp_path) == (0, ["quick"])
        assert pool.worker_pids()["python"] == prestarted
        # A kind that already has a worker gets no second one.
        pool.prestart(["python"], PYTHON, job_env())
        assert pool.worker_pids()["python"] == prestarted


def test_forked_job_os_exit_status(pool: WarmPool, tmp_path: Path) -> None:
    script = write(
        tmp_path / "exit_process.py", "import os\nprint('leaving', flush=True)\nos._exit(7)\n"
    )

    assert run_warm(pool, "python", [PYTHON, str(script)], tmp_path) == (7, ["leaving"])


def test_killed_zygote_is_replaced(pool: WarmPool, tmp_path: Path) -> None:
    script = write(tmp_path / "quick.py", QUICK)
    assert run_warm(pool, "python", [PYTHON, str(script)], tmp_path)[0] == 0
    (zygote,) = pool.worker_pids()["python"]

    os.kill(zygote, signal.SIGKILL)
    code, lines = run_warm(pool, "python", [PYTHON, str(script)], tmp_path)

    assert (code, lines) == (0, ["quick"])
    assert pool.worker_pids()["python"] != [zygote]


@pytest.mark.parametrize(
    ("kind", "argv", "message"),
    [
        ("gpu", [PYTHON, "x.py"], "unknown warm worker kind"),
        ("python", [PYTHON, "-c", "print(1)"], "interpreter option '-c'"),
        ("python", [PYTHON], "no script"),
        ("training", [PYTHON, "train.py"], "sagemaker_training.cli.train"),
    ],
)
def test_unsupported_command_rejected(
    pool: WarmPool, tmp_path: Path, kind: str, argv: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        pool.run(kind, argv, job_env(), tmp_path, print, 10)


def test_failed_start_names_kind_and_output(pool: WarmPool, tmp_path: Path) -> None:
    # Training, because no later test needs the training worker that this start replaces.
    broken = write(tmp_path / "broken" / "numpy.py", "raise ImportError('this numpy is broken')\n")
    root = training_root(tmp_path, "job", HYPERPARAMETERS)

    with pytest.raises(RuntimeError) as failure:
        run_warm(pool, "training", TRAIN_COMMAND, root, PYTHONPATH=str(broken.parent))

    assert "warm training worker failed to start" in str(failure.value)
    assert "ImportError: this numpy is broken" in str(failure.value)


def test_spark_os_exit_is_job_status(pool: WarmPool, tmp_path: Path) -> None:
    quick = write(tmp_path / "quick.py", QUICK)
    exit_process = write(
        tmp_path / "exit_process.py", "import os\nprint('leaving', flush=True)\nos._exit(7)\n"
    )
    assert run_warm(pool, "spark", [PYTHON, str(quick)], tmp_path)[0] == 0
    (worker,) = pool.worker_pids()["spark"]

    # os._exit() ends the worker process, and its status is the job's, as in a cold run.
    assert run_warm(pool, "spark", [PYTHON, str(exit_process)], tmp_path) == (7, ["leaving"])
    assert worker not in pool.worker_pids()["spark"]


# -- close --------------------------------------------------------------------------------------


def process_names(processes: list[psutil.Process]) -> list[str]:
    """Return the names of the processes that still exist (spark-submit starts short-lived ones)."""
    names = []
    for process in processes:
        try:
            names.append(process.name())
        except psutil.NoSuchProcess:
            pass
    return names


def test_close_leaves_no_process(pool: WarmPool, tmp_path: Path) -> None:
    """Close while a replacement spark worker may still be starting, after the test above."""
    script = write(tmp_path / "quick.py", QUICK)
    assert run_warm(pool, "python", [PYTHON, str(script)], tmp_path)[0] == 0
    if not pool.worker_pids()["spark"]:
        assert run_warm(pool, "spark", [PYTHON, str(script)], tmp_path)[0] == 0
    for _ in range(600):
        started = psutil.Process().children(recursive=True)
        if "java" in process_names(started):
            break
        time.sleep(0.1)
    assert "java" in process_names(started), started

    pool.close()
    pool.close()

    assert psutil.Process().children(recursive=True) == []
    for process in started:
        assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE, process


def test_prestart_environment_matches_jobs(tmp_path: Path) -> None:
    """A prestarted worker has the start-up key of the jobs that will use it."""
    from harness.config import load_config
    from harness.local.embedded import EmbeddedAWS
    from harness.local.pipeline import LocalRunner
    from harness.local.warm import _startup_key
    from harness.plan.build import build_plan
    from tests.support.project import REPO

    config = load_config(
        REPO / "config.ini",
        [REPO / "fixtures" / "fixtures.ini"],
        [f"pipeline.workspace={tmp_path / 'ws'}"],
        use_local=False,
    )
    plan = build_plan(config, "20261204120000")
    with EmbeddedAWS(tmp_path / "ws", "us-east-1") as aws:
        runner = LocalRunner(config, plan, events=None, aws=aws)
        before = runner.worker_environments()
        runner.aws()  # Stages the code and sets the environment every job gets.
        for job in plan.jobs:
            if job.kind not in ("training", "processing"):
                continue
            kind = "training" if job.kind == "training" else None
            kind = kind or ("spark" if job.step in ("prepare", "evaluate") else "python")
            job_env = {**runner._env, **job.request.get("Environment", {})}
            assert _startup_key(PYTHON, before[kind]) == _startup_key(PYTHON, job_env), job.step

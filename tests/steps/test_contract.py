"""The SageMaker job contract helpers: paths, resource config and failure reasons."""

from __future__ import annotations

import json
import subprocess
import sys

from common import contract
from tests.steps.steprunner import STEPS


def run_script(code: str, base_dir) -> subprocess.CompletedProcess:
    """Run a few lines that use common.contract in a fresh interpreter."""
    script = f"import sys\nsys.path.insert(0, {str(STEPS)!r})\nfrom common import contract\n{code}"
    return subprocess.run(
        [sys.executable, "-c", script],
        env={"SAGEMAKER_BASE_DIR": str(base_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_opt_ml_follows_base_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SAGEMAKER_BASE_DIR", raising=False)
    assert contract.opt_ml("output", "failure") == "/opt/ml/output/failure"
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    assert (
        contract.opt_ml("config", "resourceconfig.json") == f"{tmp_path}/config/resourceconfig.json"
    )


def test_resource_config_defaults_to_algo_1(monkeypatch, tmp_path):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    assert contract.resource_config() == {"current_host": "algo-1", "hosts": ["algo-1"]}


def test_resource_config_processing_path(monkeypatch, tmp_path):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]})
    )
    assert contract.resource_config() == {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}


def test_resource_config_training_path(monkeypatch, tmp_path):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    (tmp_path / "input" / "config").mkdir(parents=True)
    (tmp_path / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-3", "hosts": ["algo-3"]})
    )
    assert contract.resource_config()["current_host"] == "algo-3"


def test_step_error_writes_reason_without_traceback(tmp_path):
    result = run_script(
        "def main():\n    raise contract.StepError('bad value 7: use 1 to 4')\n"
        "contract.run_step(main)\n",
        tmp_path,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "bad value 7: use 1 to 4" in result.stderr
    assert (tmp_path / "output" / "failure").read_text() == "bad value 7: use 1 to 4"
    assert (tmp_path / "output" / "message").read_text() == "bad value 7: use 1 to 4"


def test_unexpected_error_keeps_traceback(tmp_path):
    result = run_script(
        "def main():\n    raise KeyError('features')\ncontract.run_step(main)\n", tmp_path
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert (tmp_path / "output" / "failure").read_text() == "KeyError: 'features'"
    assert (tmp_path / "output" / "message").read_text() == "KeyError: 'features'"


def test_failure_reason_is_cut_to_1024_characters(tmp_path):
    result = run_script("contract.fail('x' * 5000)\n", tmp_path)
    assert result.returncode == 1
    assert len((tmp_path / "output" / "failure").read_text()) == 1024


def test_successful_step_writes_no_reason(tmp_path):
    result = run_script("contract.run_step(lambda: print('done'))\n", tmp_path)
    assert result.returncode == 0
    assert result.stdout == "done\n"
    assert not (tmp_path / "output").exists()


def test_invalid_argument_raises_step_error():
    parser = contract.ArgumentParser(prog="step.py")
    parser.add_argument("--seed", type=int)
    try:
        parser.parse_args(["--seed", "x"])
    except contract.StepError as error:
        assert "invalid arguments for step.py" in str(error)
        assert "'x'" in str(error)
    else:
        raise AssertionError("expected StepError")

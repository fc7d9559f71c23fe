"""A throwaway project for configuration tests: a base config.ini and its entry points."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.config import Config, ConfigError, Problem, load_config

JOB_STEPS = ("prepare", "train", "predict", "evaluate", "package")

BASE_CONFIG = """\
# Base configuration for tests.
[pipeline]
name = ltr-ranking
steps = prepare, train, predict, evaluate, condition, register, package
dataset = data/letor
output_prefix = s3://harness-test-artifacts/ltr-ranking

[session]
target = local
region = us-east-1
role_arn = arn:aws:iam::111122223333:role/HarnessSageMakerExecution
bucket = harness-test-artifacts

[prepare]
entry_point = steps/prepare/prepare.py
instance_type = ml.m5.xlarge
instance_count = 1

[prepare.arguments]
seed = 42
test-shards = 4

[train]
entry_point = steps/train/train.py
instance_type = ml.m5.xlarge
instance_count = 1

[train.hyperparameters]
epochs = 30
batch_size = 8

[train.metrics]
train:loss = train:loss=([0-9.eE+-]+)
validation:ndcg@10 = validation:ndcg@10=([0-9.eE+-]+)

[predict]
entry_point = steps/predict/predict.py
instance_type = ml.m5.xlarge
instance_count = 2

[evaluate]
entry_point = steps/evaluate/evaluate.py
instance_type = ml.m5.xlarge
instance_count = 1

[condition]
metric = ndcg@10
json_path = ranking_metrics.ndcg_at_10.value
comparison = GreaterThanOrEqualTo
threshold = 0.30

[register]
model_package_group = ltr-ranking
content_type = application/json
inference_instance_type = ml.m5.large

[package]
entry_point = steps/package/package.py
instance_type = ml.m5.xlarge
instance_count = 1
"""


class Project:
    """A project folder with entry points for every job step and a base config.ini.

    Tests reach the helpers through the fixture, because pytest advises against importing
    conftest at run time.
    """

    base_text = BASE_CONFIG

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "config.ini"

    @staticmethod
    def line_of(text: str, start: str) -> int:
        """Return the 1-based number of the first line of ``text`` starting with ``start``."""
        for number, line in enumerate(text.splitlines(), start=1):
            if line.startswith(start):
                return number
        raise AssertionError(f"no line starts with {start!r}")

    @staticmethod
    def make_entry_points(root: Path, steps: Sequence[str] = JOB_STEPS) -> None:
        """Create an empty script steps/<step>/<step>.py under ``root`` for each step."""
        for step in steps:
            script = root / "steps" / step / f"{step}.py"
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text("")

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def load(
        self,
        extra_files: Sequence[Path] = (),
        overrides: Sequence[str] = (),
        *,
        use_local: bool = True,
    ) -> Config:
        return load_config(self.base, extra_files, overrides, use_local=use_local)

    def problems(
        self,
        extra_files: Sequence[Path] = (),
        overrides: Sequence[str] = (),
    ) -> list[Problem]:
        """Load, expecting ConfigError, and return its problems."""
        with pytest.raises(ConfigError) as raised:
            self.load(extra_files, overrides)
        return raised.value.problems


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project in tmp_path, which is also the cwd, so origins read "config.ini:12"."""
    monkeypatch.chdir(tmp_path)
    Project.make_entry_points(tmp_path)
    created = Project(tmp_path)
    created.write("config.ini", BASE_CONFIG)
    return created

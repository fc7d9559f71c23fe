"""The repository's config.ini and the dataset check."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config import load_config, validate_dataset

if TYPE_CHECKING:
    from tests.config.conftest import Project

REPOSITORY_CONFIG = Path(__file__).resolve().parents[2] / "config.ini"


def _copy_repository_config(root: Path) -> Path:
    """Copy config.ini into ``root`` and create the entry points it names."""
    config_path = root / "config.ini"
    shutil.copyfile(REPOSITORY_CONFIG, config_path)
    # Plain iniconfig cannot read the file (it splits metric names at ":"), and entry points
    # are one "entry_point = path" line each.
    for entry_point in re.findall(r"^entry_point\s*=\s*(\S+)", config_path.read_text(), re.M):
        script = root / entry_point
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text("")
    return config_path


def test_repository_config_loads(tmp_path: Path) -> None:
    config = load_config(_copy_repository_config(tmp_path), use_local=False)

    assert config.pipeline.name == "ltr-ranking"
    assert set(config.steps) == {"prepare", "train", "predict", "evaluate", "explain", "package"}
    assert [item["Name"] for item in config.steps["train"].metric_definitions] == [
        "train:loss",
        "validation:ndcg@10",
        "validation:best_ndcg@10",
    ]


def test_repository_dataset_checked_separately(tmp_path: Path) -> None:
    config = load_config(_copy_repository_config(tmp_path), use_local=False)

    problems = validate_dataset(config)

    assert len(problems) == 1
    assert problems[0].section == "pipeline"
    assert problems[0].key == "dataset"
    assert problems[0].value == config.pipeline.dataset
    assert "dataset folder not found" in problems[0].message


def test_dataset_folder_with_files(project: Project) -> None:
    project.write("data/letor/train.txt", "0 qid:1 1:0.5\n")

    assert validate_dataset(project.load()) == []


def test_dataset_folder_empty(project: Project) -> None:
    (project.root / "data" / "letor").mkdir(parents=True)

    problems = validate_dataset(project.load())

    assert len(problems) == 1
    assert problems[0].file == "config.ini"
    assert problems[0].line == project.line_of(project.base_text, "dataset")
    assert "empty" in problems[0].message


def test_dataset_is_a_file(project: Project) -> None:
    project.write("data/letor", "not a folder")

    problems = validate_dataset(project.load())

    assert len(problems) == 1
    assert "not a folder" in problems[0].message


def test_s3_dataset_not_checked(project: Project) -> None:
    config = project.load(overrides=["pipeline.dataset=s3://harness-test-artifacts/letor"])

    assert validate_dataset(config) == []


def test_dataset_with_other_scheme_rejected(project: Project) -> None:
    problems = project.problems(overrides=["pipeline.dataset=https://example.com/letor"])

    assert len(problems) == 1
    assert problems[0].message == "unsupported URI scheme"

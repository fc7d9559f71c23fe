"""Layering of config.ini, config.local.ini, -c files and --set overrides."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.config import Origin, load_config

if TYPE_CHECKING:
    from tests.config.conftest import Project


def test_local_file_keeps_sibling_keys(project: Project) -> None:
    project.write("config.local.ini", "[train.hyperparameters]\nepochs = 3\n")

    hyperparameters = project.load().steps["train"].hyperparameters

    assert hyperparameters["epochs"] == "3"
    assert hyperparameters["batch_size"] == "8"


def test_last_source_wins(project: Project) -> None:
    project.write("config.local.ini", "[train.hyperparameters]\nepochs = 3\n")
    first = project.write("first.ini", "[train.hyperparameters]\nepochs = 5\n")
    second = project.write("second.ini", "[train.hyperparameters]\nepochs = 6\n")

    assert project.load().steps["train"].hyperparameters["epochs"] == "3"
    assert project.load([first]).steps["train"].hyperparameters["epochs"] == "5"
    assert project.load([first, second]).steps["train"].hyperparameters["epochs"] == "6"
    assert project.load([second, first]).steps["train"].hyperparameters["epochs"] == "5"
    overridden = project.load(
        [first, second],
        ["train.hyperparameters.epochs=7", "train.hyperparameters.epochs=8"],
    )
    assert overridden.steps["train"].hyperparameters["epochs"] == "8"


def test_origins_name_file_and_line(project: Project) -> None:
    local_text = "# Local overrides.\n[train]\ninstance_count = 2\n"
    project.write("config.local.ini", local_text)
    extra = project.write("extra/more.ini", "[predict]\n\ninstance_count = 4\n")

    effective = project.load([extra], ["train.hyperparameters.epochs=3"]).effective()

    base_line = project.line_of(project.base_text, "batch_size")
    assert effective["train.hyperparameters"]["batch_size"] == (
        "8",
        Origin("config.ini", base_line),
    )
    assert effective["train"]["instance_count"] == ("2", Origin("config.local.ini", 3))
    assert effective["predict"]["instance_count"] == ("4", Origin("extra/more.ini", 3))
    assert effective["train.hyperparameters"]["epochs"] == ("3", Origin("--set #1"))


def test_origin_str_forms() -> None:
    assert str(Origin("config.local.ini", 12)) == "config.local.ini:12"
    assert str(Origin("--set #1")) == "--set #1"
    assert str(Origin("default")) == "default"


def test_defaults_have_default_origin(project: Project) -> None:
    effective = project.load().effective()

    assert effective["train"]["max_runtime_seconds"] == ("86400", Origin("default"))
    assert effective["train"]["volume_size_gb"] == ("30", Origin("default"))
    assert effective["train"]["framework_version"] == ("2.18", Origin("default"))
    assert effective["train"]["py_version"] == ("py310", Origin("default"))
    assert effective["pipeline"]["workspace"] == (".harness", Origin("default"))


def test_use_local_false_skips_local_file(project: Project) -> None:
    project.write("config.local.ini", "[train]\ninstance_count = 2\n")

    config = project.load(use_local=False)

    assert config.steps["train"].instance_count == 1
    assert config.sources == ("config.ini",)


def test_sources_in_layering_order(project: Project) -> None:
    project.write("config.local.ini", "[train]\ninstance_count = 2\n")
    extra = project.write("extra.ini", "[train]\ninstance_count = 3\n")

    config = project.load([extra], ["train.instance_count=4", "predict.instance_count=5"])

    assert config.sources == ("config.ini", "config.local.ini", "extra.ini", "--set #1", "--set #2")


def test_paths_outside_cwd_stay_absolute(
    project: Project, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "other.ini"
    elsewhere.write_text("[train]\ninstance_count = 3\n")

    effective = project.load([elsewhere]).effective()

    assert effective["train"]["instance_count"][1] == Origin(str(elsewhere), 2)


def test_relative_base_path_is_shown_as_given(project: Project) -> None:
    config = load_config(Path("config.ini"))

    assert config.project_root == project.root.resolve()
    assert config.effective()["pipeline"]["name"][1] == Origin("config.ini", 3)


def test_set_splits_section_at_last_dot(project: Project) -> None:
    config = project.load(overrides=["train.hyperparameters.learning_rate=0.01"])
    assert config.steps["train"].hyperparameters["learning_rate"] == "0.01"


def test_set_metric_with_colon_and_equals(project: Project) -> None:
    config = project.load(
        overrides=["train.metrics.validation:ndcg@10=validation:ndcg@10=([0-9.]+)"]
    )

    definitions = config.steps["train"].metric_definitions
    assert {"Name": "validation:ndcg@10", "Regex": "validation:ndcg@10=([0-9.]+)"} in definitions
    assert {"Name": "train:loss", "Regex": "train:loss=([0-9.eE+-]+)"} in definitions


def test_metric_names_sharing_a_prefix(project: Project) -> None:
    # iniconfig alone reads "validation:loss = ..." as the key "validation", so two metrics
    # starting with "validation:" would be a duplicate key.
    project.write(
        "config.local.ini",
        "[train.metrics]\nvalidation:loss = validation:loss=([0-9.]+)\n",
    )

    names = [item["Name"] for item in project.load().steps["train"].metric_definitions]

    assert names == ["train:loss", "validation:ndcg@10", "validation:loss"]


def test_typed_config(project: Project) -> None:
    config = project.load()

    assert config.pipeline.steps == (
        "prepare",
        "train",
        "predict",
        "evaluate",
        "condition",
        "register",
        "package",
    )
    assert list(config.steps) == ["prepare", "train", "predict", "evaluate", "package"]
    assert config.steps["predict"].instance_count == 2
    assert config.steps["prepare"].arguments == {"seed": "42", "test-shards": "4"}
    assert config.steps["prepare"].hyperparameters == {}
    assert config.steps["prepare"].framework_version is None
    assert config.steps["train"].arguments == {}
    assert config.steps["train"].py_version == "py310"
    assert config.condition is not None
    assert config.condition.threshold == 0.30
    assert config.register is not None
    assert config.register.inference_instance_type == "ml.m5.large"
    assert config.session.target == "local"


def test_steps_follow_graph_order(project: Project) -> None:
    config = project.load(overrides=["pipeline.steps=train, prepare"])

    assert config.pipeline.steps == ("prepare", "train")
    assert list(config.steps) == ["prepare", "train"]
    assert config.condition is None
    assert config.register is None


def test_unselected_step_section_may_be_incomplete(project: Project) -> None:
    project.write("config.local.ini", "[predict]\ninstance_count = 3\n")
    project.write(
        "config.ini",
        project.base_text.replace("entry_point = steps/package/package.py\n", ""),
    )

    config = project.load(overrides=["pipeline.steps=prepare, train, predict"])

    assert "package" not in config.steps


def test_section_values(project: Project) -> None:
    config = project.load(overrides=["train.hyperparameters.epochs=3"])

    assert config.section_values("train.hyperparameters") == {"epochs": "3", "batch_size": "8"}
    assert config.section_values("train")["volume_size_gb"] == "30"
    assert config.section_values("predict.environment") == {}


def test_environment_and_arguments(project: Project) -> None:
    project.write(
        "config.local.ini",
        "[train.environment]\nTF_CPP_MIN_LOG_LEVEL = 2\n\n"
        "[evaluate.arguments]\nrelevance-threshold = 1\n",
    )

    config = project.load()

    assert config.steps["train"].environment == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    assert config.steps["evaluate"].arguments == {"relevance-threshold": "1"}

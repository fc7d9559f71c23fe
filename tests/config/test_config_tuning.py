"""[tuning] and [tuning.ranges]: the range syntax and each rule of CreateHyperParameterTuningJob."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from harness.config import ParameterRange, Problem

if TYPE_CHECKING:
    from tests.config.conftest import Project

# Hyperparameters added to the base configuration's epochs and batch_size.
HYPERPARAMETERS = {
    "learning_rate": "0.001",
    "dropout": "0.1",
    "hidden_units": "128,64",
    "loss": "softmax",
}

SETTINGS = {
    "objective_metric": "validation:ndcg@10",
    "objective_type": "Maximize",
    "max_jobs": "12",
    "max_parallel_jobs": "2",
}

RANGES = {
    "learning_rate": "continuous 0.0001..0.01 Logarithmic",
    "batch_size": "integer 4..16",
    "hidden_units": 'categorical 128,64 | 64,32 | "256,128"',
    "loss": "categorical softmax | pairwise_logistic",
}


def tuning_text(
    settings: Mapping[str, str | None] = SETTINGS,
    ranges: Mapping[str, str] | None = RANGES,
    hyperparameters: Mapping[str, str] = HYPERPARAMETERS,
) -> str:
    """Return a config.local.ini with [tuning] (None values left out) and [tuning.ranges]."""
    lines = ["[train.hyperparameters]"]
    lines += [f"{key} = {value}" for key, value in hyperparameters.items()]
    lines += ["", "[tuning]"]
    lines += [f"{key} = {value}" for key, value in settings.items() if value is not None]
    if ranges is not None:
        lines += ["", "[tuning.ranges]"]
        lines += [f"{key} = {value}" for key, value in ranges.items()]
    return "\n".join(lines) + "\n"


def with_settings(**changes: str | None) -> dict[str, str | None]:
    return {**SETTINGS, **changes}


@dataclass(frozen=True)
class Case:
    """A tuning configuration with one mistake, and the problem it must produce."""

    id: str
    section: str
    key: str | None
    message: str
    fix: str
    settings: Mapping[str, str | None] = field(default_factory=lambda: SETTINGS)
    ranges: Mapping[str, str] | None = field(default_factory=lambda: RANGES)
    hyperparameters: Mapping[str, str] = field(default_factory=lambda: HYPERPARAMETERS)


GRID_RANGES = {
    "hidden_units": "categorical 128,64 | 64,32 | 256,128",
    "loss": "categorical softmax | pairwise_logistic",
}

CASES = [
    Case(
        "grid with an integer range",
        settings=with_settings(strategy="Grid", max_jobs=None),
        ranges={**GRID_RANGES, "batch_size": "integer 4..16"},
        section="tuning.ranges",
        key="batch_size",
        message="the Grid strategy searches only categorical ranges",
        fix='"batch_size = categorical 4 | 16"',
    ),
    Case(
        "grid max_jobs other than the combinations",
        settings=with_settings(strategy="Grid", max_jobs="5"),
        ranges=GRID_RANGES,
        section="tuning",
        key="max_jobs",
        message="the grid has 6 combinations",
        fix="set max_jobs = 6, or remove max_jobs",
    ),
    Case(
        "hyperband with early stopping",
        settings=with_settings(strategy="Hyperband", early_stopping="Auto"),
        section="tuning",
        key="early_stopping",
        message="requires early_stopping = Off",
        fix="set early_stopping = Off",
    ),
    Case(
        "logarithmic range from zero",
        ranges={**RANGES, "learning_rate": "continuous 0..0.01 Logarithmic"},
        section="tuning.ranges",
        key="learning_rate",
        message="Logarithmic scaling needs MinValue greater than 0",
        fix="raise MinValue above 0",
    ),
    Case(
        "reverse logarithmic up to one",
        ranges={**RANGES, "dropout": "continuous 0.5..1.0 ReverseLogarithmic"},
        section="tuning.ranges",
        key="dropout",
        message="ReverseLogarithmic scaling needs 0 <= MinValue and MaxValue < 1",
        fix="within 0 <= x < 1",
    ),
    Case(
        "reverse logarithmic below zero",
        ranges={**RANGES, "dropout": "continuous -0.1..0.5 ReverseLogarithmic"},
        section="tuning.ranges",
        key="dropout",
        message="ReverseLogarithmic scaling needs 0 <= MinValue and MaxValue < 1",
        fix="within 0 <= x < 1",
    ),
    Case(
        "reverse logarithmic integer range",
        ranges={**RANGES, "batch_size": "integer 0..0 ReverseLogarithmic"},
        section="tuning.ranges",
        key="batch_size",
        message="ReverseLogarithmic scaling applies only to continuous ranges",
        fix="make it a continuous range",
    ),
    Case(
        "min greater than max",
        ranges={**RANGES, "batch_size": "integer 16..4"},
        section="tuning.ranges",
        key="batch_size",
        message="MinValue 16 is greater than MaxValue 4",
        fix='"integer 4..16"',
    ),
    Case(
        "integer range with a decimal",
        ranges={**RANGES, "batch_size": "integer 4..16.5"},
        section="tuning.ranges",
        key="batch_size",
        message='MaxValue "16.5" is not a whole number',
        fix='"integer 4..32 Linear"',
    ),
    Case(
        "unknown range kind",
        ranges={**RANGES, "batch_size": "int 4..16"},
        section="tuning.ranges",
        key="batch_size",
        message='unknown range kind "int"',
        fix='use "integer"',
    ),
    Case(
        "unknown scaling type",
        ranges={**RANGES, "batch_size": "integer 4..16 Logarithmc"},
        section="tuning.ranges",
        key="batch_size",
        message='invalid scaling type "Logarithmc"',
        fix='use "Logarithmic"',
    ),
    Case(
        "range without MIN..MAX",
        ranges={**RANGES, "batch_size": "integer 4 16"},
        section="tuning.ranges",
        key="batch_size",
        message="expected MIN..MAX",
        fix='"integer 4..32 Linear"',
    ),
    Case(
        "categorical range without values",
        ranges={**RANGES, "loss": "categorical"},
        section="tuning.ranges",
        key="loss",
        message="categorical range without values",
        fix='"categorical a | b"',
    ),
    Case(
        "categorical range with 31 values",
        ranges={**RANGES, "loss": "categorical " + " | ".join(f"v{i}" for i in range(31))},
        section="tuning.ranges",
        key="loss",
        message="31 categorical values, SageMaker accepts at most 30",
        fix="remove 1 of them",
    ),
    Case(
        "categorical value listed twice",
        ranges={**RANGES, "loss": "categorical softmax | softmax"},
        section="tuning.ranges",
        key="loss",
        message='categorical value listed twice: "softmax"',
        fix="list each value once",
    ),
    Case(
        "empty categorical value",
        ranges={**RANGES, "loss": "categorical softmax || pairwise_logistic"},
        section="tuning.ranges",
        key="loss",
        message="empty categorical value",
        fix='write an empty value as ""',
    ),
    Case(
        "objective metric without definition",
        settings=with_settings(objective_metric="validation:ndcg@5"),
        section="tuning",
        key="objective_metric",
        message='no metric definition named "validation:ndcg@5" in [train.metrics]',
        fix='use "validation:ndcg@10"',
    ),
    Case(
        "zero parallel jobs",
        settings=with_settings(max_parallel_jobs="0"),
        section="tuning",
        key="max_parallel_jobs",
        message="out of range",
        fix="from 1 to",
    ),
    Case(
        "more parallel jobs than jobs",
        settings=with_settings(max_parallel_jobs="13"),
        section="tuning",
        key="max_parallel_jobs",
        message="more parallel training jobs than the tuning job runs in all (12)",
        fix="at most 12",
    ),
    Case(
        "max_jobs missing for Bayesian",
        settings=with_settings(max_jobs=None),
        section="tuning",
        key="max_jobs",
        message="the Bayesian strategy needs a maximum number of training jobs",
        fix='add "max_jobs = 20"',
    ),
    Case(
        "hyperband min_resource above max_resource",
        settings=with_settings(strategy="Hyperband", min_resource="10", max_resource="9"),
        section="tuning",
        key="min_resource",
        message="min_resource is greater than max_resource (9 epochs)",
        fix="at most 9",
    ),
    Case(
        "hyperband min_resource zero",
        settings=with_settings(strategy="Hyperband", min_resource="0"),
        section="tuning",
        key="min_resource",
        message="out of range 1..20000",
        fix="whole number of epochs",
    ),
    Case(
        "hyperband max_resource above 20000",
        settings=with_settings(strategy="Hyperband", max_resource="20001"),
        section="tuning",
        key="max_resource",
        message="out of range 1..20000",
        fix="whole number of epochs",
    ),
    Case(
        "hyperband min_resource above inferred epochs",
        settings=with_settings(strategy="Hyperband", min_resource="31"),
        section="tuning",
        key="min_resource",
        message="min_resource is greater than max_resource (30 epochs)",
        fix="at most 30",
    ),
    Case(
        "hyperband without epochs to infer from",
        settings=with_settings(strategy="Hyperband"),
        ranges={**RANGES, "epochs": "integer 5..30"},
        section="tuning",
        key="max_resource",
        message="missing max_resource",
        fix='add "max_resource = 30"',
    ),
    Case(
        "resources without hyperband",
        settings=with_settings(max_resource="9"),
        section="tuning",
        key="max_resource",
        message="max_resource is used only by the Hyperband strategy",
        fix="set strategy = Hyperband",
    ),
    Case(
        "six warm start parents",
        settings=with_settings(
            warm_start_parents="t1, t2, t3, t4, t5, t6",
            warm_start_type="TransferLearning",
        ),
        section="tuning",
        key="warm_start_parents",
        message="6 parent tuning jobs, SageMaker accepts 1 to 5",
        fix="keep at most 5",
    ),
    Case(
        "warm start parent with invalid name",
        settings=with_settings(warm_start_parents="ltr_tuning", warm_start_type="TransferLearning"),
        section="tuning",
        key="warm_start_parents",
        message='invalid tuning job name "ltr_tuning"',
        fix='"ltr-tuning"',
    ),
    Case(
        "warm start parent listed twice",
        settings=with_settings(warm_start_parents="t1, t1", warm_start_type="TransferLearning"),
        section="tuning",
        key="warm_start_parents",
        message="tuning job listed twice: t1",
        fix="list each job once",
    ),
    Case(
        "warm start parents without type",
        settings=with_settings(warm_start_parents="t1"),
        section="tuning",
        key="warm_start_parents",
        message="missing warm_start_type",
        fix="IdenticalDataAndAlgorithm",
    ),
    Case(
        "warm start type without parents",
        settings=with_settings(warm_start_type="IdenticalDataAndAlgorithm"),
        section="tuning",
        key="warm_start_type",
        message="warm_start_type without warm_start_parents",
        fix="add warm_start_parents",
    ),
    Case(
        "too few jobs not improving",
        settings=with_settings(max_jobs_not_improving="2"),
        section="tuning",
        key="max_jobs_not_improving",
        message="out of range 3..",
        fix="from 3 to",
    ),
    Case(
        "tuned name not a hyperparameter",
        ranges={**RANGES, "learning-rate": "continuous 0.0001..0.01"},
        section="tuning.ranges",
        key="learning-rate",
        message='tuned hyperparameter "learning-rate" is not in [train.hyperparameters]',
        fix='rename it to "learning_rate"',
    ),
    Case(
        "unknown strategy",
        settings=with_settings(strategy="bayesian"),
        section="tuning",
        key="strategy",
        message="invalid choice",
        fix='use "Bayesian"',
    ),
    Case(
        "misspelled Hyperband with resources",
        settings=with_settings(strategy="hyperband", min_resource="2"),
        section="tuning",
        key="strategy",
        message="invalid choice",
        fix='use "Hyperband"',
    ),
    Case(
        "tuning without ranges",
        ranges=None,
        section="tuning.ranges",
        key=None,
        message="no hyperparameter ranges to tune",
        fix="add a [tuning.ranges] section",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_invalid_tuning(project: Project, case: Case) -> None:
    text = tuning_text(case.settings, case.ranges, case.hyperparameters)
    project.write("config.local.ini", text)

    problems = project.problems()

    assert len(problems) == 1, "\n".join(str(problem) for problem in problems)
    problem = problems[0]
    assert problem.file == "config.local.ini"
    assert problem.section == case.section
    assert problem.key == case.key
    assert case.message in problem.message
    assert case.fix in problem.fix
    if case.key is not None and problem.value is not None:
        key_line = f"{case.key} = {problem.value}"
        assert problem.line == project.line_of(text, key_line)


def test_tuning_loads(project: Project) -> None:
    project.write("config.local.ini", tuning_text())

    tuning = project.load().tuning

    assert tuning is not None
    assert tuning.strategy == "Bayesian"
    assert tuning.objective_metric == "validation:ndcg@10"
    assert tuning.objective_type == "Maximize"
    assert tuning.max_jobs == 12
    assert tuning.max_parallel_jobs == 2
    assert tuning.early_stopping == "Off"
    assert tuning.random_seed is None
    assert tuning.min_resource is None
    assert tuning.ranges == (
        ParameterRange("learning_rate", "Continuous", "0.0001", "0.01", "Logarithmic"),
        ParameterRange("batch_size", "Integer", "4", "16", "Auto"),
        ParameterRange("hidden_units", "Categorical", values=("128,64", "64,32", "256,128")),
        ParameterRange("loss", "Categorical", values=("softmax", "pairwise_logistic")),
    )


def test_no_tuning_section_means_no_tuning(project: Project) -> None:
    assert project.load().tuning is None


def test_grid_max_jobs_defaults_to_combinations(project: Project) -> None:
    settings = with_settings(strategy="Grid", max_jobs=None, max_parallel_jobs="6")
    project.write("config.local.ini", tuning_text(settings, GRID_RANGES))

    tuning = project.load().tuning

    assert tuning is not None
    assert tuning.max_jobs == 6


def test_hyperband_infers_max_resource_from_epochs(project: Project) -> None:
    project.write("config.local.ini", tuning_text(with_settings(strategy="Hyperband")))

    tuning = project.load().tuning

    assert tuning is not None
    assert tuning.min_resource == 1
    assert tuning.max_resource == 30


def test_range_min_equal_to_max_allowed(project: Project) -> None:
    # AMT requires MinValue <= MaxValue, so a range of one value is valid.
    ranges = {**RANGES, "batch_size": "integer 8..8"}
    project.write("config.local.ini", tuning_text(ranges=ranges))

    tuning = project.load().tuning

    assert tuning is not None
    assert tuning.ranges[1] == ParameterRange("batch_size", "Integer", "8", "8", "Auto")


def test_quoted_categorical_values(project: Project) -> None:
    ranges = {"loss": 'categorical "a|b" | " padded " | ""'}
    project.write("config.local.ini", tuning_text(ranges=ranges))

    tuning = project.load().tuning

    assert tuning is not None
    assert tuning.ranges[0].values == ("a|b", " padded ", "")


def test_thirty_one_ranges_rejected(project: Project) -> None:
    # Each ParameterRanges list contains at most 30 ranges, and the API caps their sum at 30
    # too, so 31 ranges of one kind exceed both limits and are reported once.
    names = [f"h{index}" for index in range(31)]
    hyperparameters = {**HYPERPARAMETERS, **dict.fromkeys(names, "1")}
    ranges = dict.fromkeys(names, "integer 1..4")
    text = tuning_text(ranges=ranges, hyperparameters=hyperparameters)
    project.write("config.local.ini", text)

    problems = project.problems()

    assert len(problems) == 1, "\n".join(str(problem) for problem in problems)
    assert problems[0].section == "tuning.ranges"
    assert problems[0].message == "31 hyperparameter ranges, SageMaker accepts at most 30"
    assert problems[0].line == project.line_of(text, "h30 = integer")


def test_ranges_without_tuning_section(project: Project) -> None:
    project.write("config.local.ini", "[tuning.ranges]\nbatch_size = integer 4..16\n")

    problems = project.problems()

    assert len(problems) == 1
    assert problems[0].section == "tuning"
    assert problems[0].line == 1
    assert "missing section" in problems[0].message


def test_tuning_without_train_step(project: Project) -> None:
    project.write("config.local.ini", tuning_text())

    problems = project.problems(overrides=["pipeline.steps=prepare"])

    assert len(problems) == 1
    assert problems[0].section == "tuning"
    assert "train step, which is not selected" in problems[0].message


def test_tuning_problems_reported_together(project: Project) -> None:
    settings = with_settings(objective_type="Max", max_parallel_jobs="0")
    ranges = {**RANGES, "batch_size": "integer 16..4", "dropout": "continuous 0..1 Log"}
    project.write("config.local.ini", tuning_text(settings, ranges))

    problems = project.problems()

    assert [(problem.section, problem.key) for problem in problems] == [
        ("tuning", "objective_type"),
        ("tuning", "max_parallel_jobs"),
        ("tuning.ranges", "batch_size"),
        ("tuning.ranges", "dropout"),
    ]


def test_missing_objective_type(project: Project) -> None:
    project.write("config.local.ini", tuning_text(with_settings(objective_type=None)))

    problems = project.problems()

    assert problems == [
        Problem(
            "config.local.ini",
            project.line_of(tuning_text(), "[tuning]"),
            "tuning",
            "objective_type",
            None,
            "missing required key",
            'add "objective_type = Maximize"',
        )
    ]


def test_tuning_range_set_from_command_line(project: Project) -> None:
    project.write("config.local.ini", tuning_text())

    config = project.load(overrides=["tuning.ranges.dropout=continuous 0..0.9 ReverseLogarithmic"])

    assert config.tuning is not None
    assert config.tuning.ranges[-1] == ParameterRange(
        "dropout", "Continuous", "0", "0.9", "ReverseLogarithmic"
    )

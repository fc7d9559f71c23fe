"""Invalid configurations: each problem names its file, line, section, key, value and fix."""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.config import ConfigError, Problem

if TYPE_CHECKING:
    from tests.config.conftest import Project


@dataclass(frozen=True)
class Case:
    """One invalid configuration and the single problem it must produce."""

    id: str
    file: str
    line: int | None
    section: str | None
    key: str | None
    value: str | None
    message: str
    fix: str
    local: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    extra_files: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()


CASES = [
    Case(
        "unknown section",
        local="[train]\ninstance_count = 2\n\n[trian.hyperparameters]\nepochs = 3\n",
        file="config.local.ini",
        line=4,
        section="trian.hyperparameters",
        key=None,
        value=None,
        message="unknown section",
        fix="[train.hyperparameters]",
    ),
    Case(
        "unknown key",
        local="[train]\ninstance_typ = ml.m5.xlarge\n",
        file="config.local.ini",
        line=2,
        section="train",
        key="instance_typ",
        value="ml.m5.xlarge",
        message="unknown key",
        fix='"instance_type"',
    ),
    Case(
        "bad int",
        local="[predict]\ninstance_count = two\n",
        file="config.local.ini",
        line=2,
        section="predict",
        key="instance_count",
        value="two",
        message="not an integer",
        fix="whole number from 1 to 100",
    ),
    Case(
        "int out of range",
        local="[predict]\nvolume_size_gb = 0\n",
        file="config.local.ini",
        line=2,
        section="predict",
        key="volume_size_gb",
        value="0",
        message="out of range",
        fix="from 1 to 16384",
    ),
    Case(
        "processes per host zero",
        local="[train]\nprocesses_per_host = 0\n",
        file="config.local.ini",
        line=2,
        section="train",
        key="processes_per_host",
        value="0",
        message="out of range 1..2147483647",
        fix="whole number of processes from 1",
    ),
    Case(
        "processes per host on processing",
        local="[predict]\nprocesses_per_host = 2\n",
        file="config.local.ini",
        line=2,
        section="predict",
        key="processes_per_host",
        value="2",
        message="unknown key",
        fix="remove it",
    ),
    Case(
        "inline comment",
        local="[predict]\ninstance_count = 2  # two machines\n",
        file="config.local.ini",
        line=2,
        section="predict",
        key="instance_count",
        value="2  # two machines",
        message="not an integer",
        fix="Comments must be on a line",
    ),
    Case(
        "empty value",
        local="[train]\nentry_point =\n",
        file="config.local.ini",
        line=2,
        section="train",
        key="entry_point",
        value="",
        message="empty value",
        fix='"entry_point = steps/train/train.py"',
    ),
    Case(
        "bad float",
        local="[condition]\nthreshold = high\n",
        file="config.local.ini",
        line=2,
        section="condition",
        key="threshold",
        value="high",
        message="not a number",
        fix="decimal number",
    ),
    Case(
        "bad choice for target",
        local="[session]\ntarget = clod\n",
        file="config.local.ini",
        line=2,
        section="session",
        key="target",
        value="clod",
        message="invalid choice",
        fix='"cloud"',
    ),
    Case(
        "NotEquals comparison",
        local="[condition]\ncomparison = NotEquals\n",
        file="config.local.ini",
        line=2,
        section="condition",
        key="comparison",
        value="NotEquals",
        message="invalid choice",
        fix="no NotEquals",
    ),
    Case(
        "malformed S3 URI",
        local="[pipeline]\noutput_prefix = s3:/harness-test-artifacts/out\n",
        file="config.local.ini",
        line=2,
        section="pipeline",
        key="output_prefix",
        value="s3:/harness-test-artifacts/out",
        message="not an S3 URI",
        fix='"s3://harness-test-artifacts/out"',
    ),
    Case(
        "S3 URI with bad bucket",
        local="[pipeline]\noutput_prefix = s3://Artifacts/out\n",
        file="config.local.ini",
        line=2,
        section="pipeline",
        key="output_prefix",
        value="s3://Artifacts/out",
        message='invalid bucket "Artifacts"',
        fix='"artifacts"',
    ),
    Case(
        "malformed role ARN",
        local="[session]\nrole_arn = arn:aws:iam::1111:role/Harness\n",
        file="config.local.ini",
        line=2,
        section="session",
        key="role_arn",
        value="arn:aws:iam::1111:role/Harness",
        message="not an IAM role ARN",
        fix="12-digit account id",
    ),
    Case(
        "bad region",
        local="[session]\nregion = us_east_1\n",
        file="config.local.ini",
        line=2,
        section="session",
        key="region",
        value="us_east_1",
        message="not an AWS region name",
        fix='"us-east-1"',
    ),
    Case(
        "instance type without ml prefix",
        local="[train]\ninstance_type = m5.xlarge\n",
        file="config.local.ini",
        line=2,
        section="train",
        key="instance_type",
        value="m5.xlarge",
        message="not a SageMaker instance type",
        fix='use an ml.* type such as "ml.m5.xlarge"',
    ),
    Case(
        "unknown instance family",
        local="[predict]\ninstance_type = ml.m55.xlarge\n",
        file="config.local.ini",
        line=2,
        section="predict",
        key="instance_type",
        value="ml.m55.xlarge",
        message='unknown instance family "m55"',
        fix='"ml.m5.xlarge"',
    ),
    Case(
        "unknown instance size",
        local="[predict]\ninstance_type = ml.m5.xlarg\n",
        file="config.local.ini",
        line=2,
        section="predict",
        key="instance_type",
        value="ml.m5.xlarg",
        message='no size "xlarg"',
        fix='did you mean "ml.m5.xlarge"?',
    ),
    Case(
        "pipeline name with underscore",
        local="[pipeline]\nname = ltr_ranking\n",
        file="config.local.ini",
        line=2,
        section="pipeline",
        key="name",
        value="ltr_ranking",
        message="letters, digits and hyphens",
        fix='"ltr-ranking"',
    ),
    Case(
        "pipeline name too long",
        local="[pipeline]\nname = " + "a" * 40 + "\n",
        file="config.local.ini",
        line=2,
        section="pipeline",
        key="name",
        value="a" * 40,
        message="too long: 40 characters",
        fix="at most 39 characters",
    ),
    Case(
        "missing entry point file",
        local="[train]\nentry_point = steps/train/missing.py\n",
        file="config.local.ini",
        line=2,
        section="train",
        key="entry_point",
        value="steps/train/missing.py",
        message="file not found",
        fix="correct the path",
    ),
    Case(
        "entry point outside steps",
        files={"scripts/train.py": ""},
        local="[train]\nentry_point = scripts/train.py\n",
        file="config.local.ini",
        line=2,
        section="train",
        key="entry_point",
        value="scripts/train.py",
        message="outside the steps/ folder",
        fix="under steps/",
    ),
    Case(
        "metric regex without capture group",
        local="[train.metrics]\nvalidation:map = validation:map=[0-9.]+\n",
        file="config.local.ini",
        line=2,
        section="train.metrics",
        key="validation:map",
        value="validation:map=[0-9.]+",
        message="0 capture groups",
        fix="(?:...)",
    ),
    Case(
        "metric regex that does not compile",
        local="[train.metrics]\nvalidation:map = validation:map=([0-9.]+\n",
        file="config.local.ini",
        line=2,
        section="train.metrics",
        key="validation:map",
        value="validation:map=([0-9.]+",
        message="invalid regex",
        fix="correct the regex",
    ),
    Case(
        "bad bucket name",
        local="[session]\nbucket = My_Bucket\n",
        file="config.local.ini",
        line=2,
        section="session",
        key="bucket",
        value="My_Bucket",
        message="lowercase letters, digits, dots and hyphens",
        fix='"my-bucket"',
    ),
    Case(
        "bucket name ending in -s3alias",
        local="[session]\nbucket = artifacts-s3alias\n",
        file="config.local.ini",
        line=2,
        section="session",
        key="bucket",
        value="artifacts-s3alias",
        message='do not end with "-s3alias"',
        fix="use a name",
    ),
    Case(
        "bad environment variable name",
        local="[train.environment]\nLOG-LEVEL = 2\n",
        file="config.local.ini",
        line=2,
        section="train.environment",
        key="LOG-LEVEL",
        value="2",
        message="invalid environment variable name",
        fix='"LOG_LEVEL"',
    ),
    Case(
        "bad JSON path",
        local="[condition]\njson_path = ranking_metrics..value\n",
        file="config.local.ini",
        line=2,
        section="condition",
        key="json_path",
        value="ranking_metrics..value",
        message="invalid JSON path",
        fix="[N]",
    ),
    Case(
        "arguments for a training step",
        local="[train.arguments]\nseed = 1\n",
        file="config.local.ini",
        line=1,
        section="train.arguments",
        key=None,
        value=None,
        message="unknown section",
        fix="[train.hyperparameters]",
    ),
    Case(
        "step without its upstream",
        overrides=("pipeline.steps = prepare, predict",),
        file="--set #1",
        line=None,
        section="pipeline",
        key="steps",
        value="prepare, predict",
        message="predict needs steps that are not selected: train (for model)",
        fix="add train to steps, or remove predict",
    ),
    Case(
        "unknown step",
        overrides=("pipeline.steps=prepare, trian",),
        file="--set #1",
        line=None,
        section="pipeline",
        key="steps",
        value="prepare, trian",
        message='unknown step "trian"',
        fix='"train"',
    ),
    Case(
        "INI syntax error",
        local="[train]\ninstance_count = 2\nthis line has no equals sign\n",
        file="config.local.ini",
        line=3,
        section=None,
        key=None,
        value=None,
        message="syntax error: unexpected line",
        fix="key = value",
    ),
    Case(
        "duplicate key in one file",
        local="[train]\ninstance_count = 2\ninstance_count = 3\n",
        file="config.local.ini",
        line=3,
        section=None,
        key=None,
        value=None,
        message="duplicate name 'instance_count'",
        fix="keep one of the two lines",
    ),
    Case(
        "missing -c file",
        extra_files=("missing.ini",),
        file="missing.ini",
        line=None,
        section=None,
        key=None,
        value=None,
        message="file not found",
        fix="path given to -c",
    ),
    Case(
        "--set without equals",
        overrides=("train.instance_count",),
        file="--set #1",
        line=None,
        section=None,
        key=None,
        value="train.instance_count",
        message='missing "="',
        fix="--set section.key=value",
    ),
    Case(
        "--set without section",
        overrides=("epochs=3",),
        file="--set #1",
        line=None,
        section=None,
        key=None,
        value="epochs=3",
        message="missing the section",
        fix="--set section.key=value",
    ),
    Case(
        "--set value checked",
        overrides=("train.hyperparameters.epochs=3", "train.instance_count=0"),
        file="--set #2",
        line=None,
        section="train",
        key="instance_count",
        value="0",
        message="out of range",
        fix="from 1 to 100",
    ),
    Case(
        "explain aggregation unknown",
        local="[explain.arguments]\nagg-method = mean-abs\n",
        file="config.local.ini",
        line=2,
        section="explain.arguments",
        key="agg-method",
        value="mean-abs",
        message="invalid choice",
        fix='use "mean_abs"',
    ),
    Case(
        "explain clusters zero",
        local="[explain.arguments]\nnum-clusters = 0\n",
        file="config.local.ini",
        line=2,
        section="explain.arguments",
        key="num-clusters",
        value="0",
        message="out of range",
        fix="whole number of clusters from 1",
    ),
    Case(
        "explain samples not integer",
        overrides=("explain.arguments.num-samples=1e3",),
        file="--set #1",
        line=None,
        section="explain.arguments",
        key="num-samples",
        value="1e3",
        message="not an integer",
        fix="whole number of coalitions",
    ),
    Case(
        "explain seed negative",
        local="[explain.arguments]\nseed = -1\n",
        file="config.local.ini",
        line=2,
        section="explain.arguments",
        key="seed",
        value="-1",
        message="out of range",
        fix="from 0 to 4294967295",
    ),
    Case(
        "explain grid too coarse",
        local="[explain.arguments]\npdp-grid-resolution = 1\n",
        file="config.local.ini",
        line=2,
        section="explain.arguments",
        key="pdp-grid-resolution",
        value="1",
        message="out of range",
        fix="buckets from 2",
    ),
    Case(
        "explain local values not boolean",
        local="[explain.arguments]\nsave-local-shap-values = on\n",
        file="config.local.ini",
        line=2,
        section="explain.arguments",
        key="save-local-shap-values",
        value="on",
        message="not true or false",
        fix="use true or false",
    ),
    Case(
        "explain baseline host file",
        local="[explain.arguments]\nbaseline = data/baseline.csv\n",
        file="config.local.ini",
        line=2,
        section="explain.arguments",
        key="baseline",
        value="data/baseline.csv",
        message="not a baseline method or a container path",
        fix="/opt/ml/processing/input/test",
    ),
    Case(
        "explain feature listed twice",
        local="[explain.arguments]\nfeatures-to-explain = f1, f8, f1\n",
        file="config.local.ini",
        line=2,
        section="explain.arguments",
        key="features-to-explain",
        value="f1, f8, f1",
        message="feature listed twice: f1",
        fix="list each feature once",
    ),
    Case(
        "explain empty feature item",
        local="[explain.arguments]\nfeatures-to-explain = f1,,f8\n",
        file="config.local.ini",
        line=2,
        section="explain.arguments",
        key="features-to-explain",
        value="f1,,f8",
        message="not a comma-separated list",
        fix="zero-based indices",
    ),
    Case(
        "explain on two instances",
        local="[explain]\ninstance_count = 2\n",
        file="config.local.ini",
        line=2,
        section="explain",
        key="instance_count",
        value="2",
        message="explain runs on one instance",
        fix="set instance_count = 1",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_invalid_configuration(project: Project, case: Case) -> None:
    for name, text in case.files.items():
        project.write(name, text)
    if case.local is not None:
        project.write("config.local.ini", case.local)
    extra_files = [Path(name) for name in case.extra_files]

    problems = project.problems(extra_files, case.overrides)

    assert len(problems) == 1, "\n".join(str(problem) for problem in problems)
    problem = problems[0]
    assert problem.file == case.file
    assert problem.line == case.line
    assert problem.section == case.section
    assert problem.key == case.key
    assert problem.value == case.value
    assert case.message in problem.message
    assert case.fix in problem.fix

    text = str(problem)
    location = case.file if case.line is None else f"{case.file}:{case.line}"
    assert text.startswith(location + " ") or text.startswith(location + ":")
    if case.section is not None:
        assert f"[{case.section}]" in text
    if case.key is not None:
        assert f" {case.key}" in text
    if case.value is not None:
        assert json.dumps(case.value) in text
    assert f"Fix: {case.fix}" in text or case.fix in text.split("Fix: ", 1)[1]


def test_all_problems_reported_at_once(project: Project) -> None:
    project.write(
        "config.local.ini",
        "[train]\ninstance_type = m5.xlarge\ninstance_count = two\n\n"
        "[sesion]\nregion = us-east-1\n",
    )

    with pytest.raises(ConfigError) as raised:
        project.load([Path("missing.ini")], ["pipeline.name=ltr_ranking", "epochs"])

    found = [(problem.file, problem.line, problem.key) for problem in raised.value.problems]
    assert found == [
        ("missing.ini", None, None),
        ("config.local.ini", 2, "instance_type"),
        ("config.local.ini", 3, "instance_count"),
        ("config.local.ini", 5, None),
        ("--set #1", None, "name"),
        ("--set #2", None, None),
    ]
    message = str(raised.value)
    assert message.startswith("Configuration is invalid (6 problems):\n")
    assert len(message.splitlines()) == 7


def test_misspelt_section_keys_checked(project: Project) -> None:
    project.write("config.local.ini", "[trian]\ninstnce_count = 2\ninstance_type = m5.xlarge\n")

    problems = project.problems()

    found = [(problem.line, problem.key, problem.message, problem.fix) for problem in problems]
    assert found[0] == (1, None, "unknown section", "rename it to [train]")
    assert found[1][:3] == (2, "instnce_count", "unknown key")
    assert found[1][3] == 'rename it to "instance_count"'
    assert found[2][:2] == (3, "instance_type")
    assert "not a SageMaker instance type" in found[2][2]
    assert len(found) == 3


def test_problem_str_format() -> None:
    problem = Problem(
        "config.local.ini",
        12,
        "train",
        "instance_type",
        "m5.xlarge",
        "not a SageMaker instance type",
        'use an ml.* type such as "ml.m5.xlarge"',
    )

    assert str(problem) == (
        'config.local.ini:12 [train] instance_type = "m5.xlarge": not a SageMaker instance '
        'type. Fix: use an ml.* type such as "ml.m5.xlarge".'
    )


def test_problem_str_shortens_long_values() -> None:
    problem = Problem(
        "a.ini", 1, "train.hyperparameters", "h", "x" * 3000, "too long", "shorten it"
    )

    text = str(problem)

    assert "(3000 characters)" in text
    assert len(text) < 250


def test_config_error_headline_singular() -> None:
    error = ConfigError([Problem("a.ini", None, None, None, None, "file not found", "check it")])

    assert (
        str(error)
        == "Configuration is invalid (1 problem):\n  a.ini: file not found. Fix: check it."
    )


def test_config_error_pickles() -> None:
    problem = Problem("a.ini", 2, "train", "instance_count", "x", "not an integer", "use 1")

    copy = pickle.loads(pickle.dumps(ConfigError([problem])))

    assert copy.problems == [problem]
    assert str(copy) == str(ConfigError([problem]))


def test_missing_required_key(project: Project) -> None:
    project.write(
        "config.ini", project.base_text.replace("inference_instance_type = ml.m5.large\n", "")
    )

    problems = project.problems()

    assert len(problems) == 1
    assert problems[0].file == "config.ini"
    assert problems[0].line == project.line_of(project.base_text, "[register]")
    assert problems[0].section == "register"
    assert problems[0].key == "inference_instance_type"
    assert problems[0].message == "missing required key"
    assert problems[0].fix == 'add "inference_instance_type = ml.m5.large"'


def test_missing_section_for_selected_step(project: Project) -> None:
    start = project.base_text.index("[package]")
    project.write("config.ini", project.base_text[:start])

    problems = project.problems()

    assert len(problems) == 1
    assert problems[0].file == "config.ini"
    assert problems[0].section == "package"
    assert problems[0].message == "missing section"
    assert "remove package from [pipeline] steps" in problems[0].fix


def test_no_missing_key_problems_when_a_file_is_unreadable(project: Project) -> None:
    project.write("config.ini", project.base_text.replace("instance_count = 2\n", ""))
    project.write("config.local.ini", "[predict\ninstance_count = 2\n")

    problems = project.problems()

    assert len(problems) == 1
    assert problems[0].file == "config.local.ini"
    assert problems[0].line == 1


@pytest.mark.parametrize("text", ["[predict\n", "[train]\nseed = 1\n[predict  # comment\n"])
def test_unclosed_section_header(project: Project, text: str) -> None:
    # iniconfig alone reads "[predict" after a setting as part of that setting's value.
    project.write("config.local.ini", text)

    problems = project.problems()

    assert len(problems) == 1
    assert problems[0].line == text.count("\n")
    assert problems[0].message == "syntax error: section header without a closing ]"


def test_too_many_metric_definitions(project: Project) -> None:
    lines = "".join(f"m{index} = m{index}=([0-9]+)\n" for index in range(39))
    project.write("config.local.ini", "[train.metrics]\n" + lines)

    problems = project.problems()

    assert len(problems) == 1
    assert problems[0].section == "train.metrics"
    assert problems[0].line == 40
    assert problems[0].message == "41 metric definitions, SageMaker accepts at most 40"


def test_hyperparameter_value_too_long(project: Project) -> None:
    problems = project.problems(overrides=["train.hyperparameters.notes=" + "x" * 2501])

    assert len(problems) == 1
    assert problems[0].key == "notes"
    assert "maximum is 2500" in problems[0].message

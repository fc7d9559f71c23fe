"""The configuration schema: which sections and keys exist, their types and defaults.

To add a section, add an entry to SECTIONS (in the position where ``harness config show``
should print it) and a field to Config that the loader fills from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from harness.config.checks import (
    MAX_CONTAINER_ARGUMENT_LENGTH,
    MAX_CONTAINER_ARGUMENTS,
    MAX_ENVIRONMENT_VARIABLES,
    MAX_HYPERPARAMETER_KEY_LENGTH,
    MAX_HYPERPARAMETER_VALUE_LENGTH,
    MAX_HYPERPARAMETERS,
    MAX_METRIC_DEFINITIONS,
    MAX_PROCESSING_ENVIRONMENT_LENGTH,
    MAX_PROCESSING_INSTANCE_COUNT,
    MAX_PROCESSING_RUNTIME_SECONDS,
    MAX_PROCESSING_VOLUME_SIZE_GB,
    MAX_TRAINING_ENVIRONMENT_LENGTH,
    MAX_TRAINING_RUNTIME_SECONDS,
    CheckContext,
    Choice,
    Custom,
    InstanceType,
    Integer,
    Issue,
    KeyCheck,
    Number,
    Text,
    ValueType,
    check_argument_name,
    check_bucket,
    check_cache_expiry,
    check_content_type,
    check_dataset,
    check_entry_point,
    check_json_path,
    check_metric_name,
    check_metric_regex,
    check_model_package_group,
    check_pipeline_name,
    check_profile_steps,
    check_region,
    check_role_arn,
    check_s3_uri,
    check_tracking_uri,
    did_you_mean,
    environment_name_check,
    length_check,
)
from harness.config.graph import JOB_KINDS, STEP_ORDER
from harness.config.instance_types import InstanceKind
from harness.config.ranges import (
    EARLY_STOPPING_TYPES,
    MAX_API_INTEGER,
    MAX_HYPERBAND_RESOURCE,
    MAX_PARAMETER_RANGES,
    MIN_JOBS_NOT_IMPROVING,
    OBJECTIVE_TYPES,
    STRATEGIES,
    WARM_START_TYPES,
    check_parent_jobs,
    check_range,
    check_range_name,
)

# SageMaker ConditionStep comparisons that take one value and a threshold.
COMPARISONS: tuple[str, ...] = (
    "Equals",
    "GreaterThan",
    "GreaterThanOrEqualTo",
    "LessThan",
    "LessThanOrEqualTo",
)


@dataclass(frozen=True)
class KeySpec:
    """A key of a fixed section. ``example`` is a valid value shown when the key is missing."""

    type: ValueType
    required: bool = True
    default: str | None = None
    example: str = ""


@dataclass(frozen=True)
class SectionSpec:
    """A section with a fixed set of keys.

    It is required when ``step`` is selected in pipeline.steps, or always when ``step`` is None.
    An ``optional`` section is never required, but its required keys are when it is present.
    """

    name: str
    keys: Mapping[str, KeySpec]
    step: str | None = None
    optional: bool = False


@dataclass(frozen=True)
class MapSectionSpec:
    """A section whose keys the user chooses, such as hyperparameters. It is never required."""

    name: str
    entry_noun: str
    max_entries: int
    key_check: KeyCheck
    value_check: KeyCheck


Spec = SectionSpec | MapSectionSpec


class StepList(ValueType):
    """A comma-separated list of pipeline steps, returned in pipeline graph order."""

    def check(self, value: str, context: CheckContext) -> Issue | None:
        names = [name.strip() for name in value.split(",")]
        if names == [""]:
            return Issue("no steps selected", f"list steps from: {', '.join(STEP_ORDER)}")
        if "" in names:
            return Issue("empty step name in the list", "remove the extra comma")
        unknown = [name for name in names if name not in STEP_ORDER]
        if unknown:
            return _unknown_steps_issue(unknown)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            return Issue(
                f"step listed twice: {', '.join(repeated)}",
                "list each step once",
            )
        return None

    def convert(self, value: str) -> tuple[str, ...]:
        names = {name.strip() for name in value.split(",")}
        return tuple(step for step in STEP_ORDER if step in names)


def _unknown_steps_issue(unknown: list[str]) -> Issue:
    quoted = ", ".join(f'"{name}"' for name in unknown)
    guesses = [(name, did_you_mean(name, STEP_ORDER)) for name in unknown]
    hints = [f'"{guess}" for "{name}"' for name, guess in guesses if guess is not None]
    fix = f"use {', '.join(hints)}" if hints else f"use steps from: {', '.join(STEP_ORDER)}"
    noun = "step" if len(unknown) == 1 else "steps"
    return Issue(f"unknown {noun} {quoted}", fix)


def _job_step_section(step: str, kind: InstanceKind) -> SectionSpec:
    max_runtime = (
        MAX_TRAINING_RUNTIME_SECONDS if kind == "training" else MAX_PROCESSING_RUNTIME_SECONDS
    )
    # The model sets no maximum instance count or volume size for training, so the
    # processing maximums apply to both kinds.
    keys: dict[str, KeySpec] = {
        "entry_point": KeySpec(Custom(check_entry_point), example=f"steps/{step}/{step}.py"),
        "instance_type": KeySpec(InstanceType(kind), example="ml.m5.xlarge"),
        "instance_count": KeySpec(Integer(1, MAX_PROCESSING_INSTANCE_COUNT), example="1"),
        "max_runtime_seconds": KeySpec(
            Integer(1, max_runtime, "seconds"), required=False, default="86400"
        ),
        "volume_size_gb": KeySpec(
            Integer(1, MAX_PROCESSING_VOLUME_SIZE_GB, "GB"), required=False, default="30"
        ),
    }
    if kind == "training":
        keys["framework_version"] = KeySpec(
            Text(
                re.compile(r"\d+\.\d+(\.\d+)?"),
                invalid_message="not a framework version",
                fix='use major.minor, e.g. "2.18"',
            ),
            required=False,
            default="2.18",
        )
        keys["py_version"] = KeySpec(
            Text(
                re.compile(r"py3\d{1,2}"),
                invalid_message="not a Python version tag",
                fix='use py3<minor>, e.g. "py310"',
            ),
            required=False,
            default="py310",
        )
        # Data-parallel training with Horovod over MPI, as SageMaker's MPI distribution
        # (SDK v2 `distribution={"mpi": ...}`, SDK v3 `ModelTrainer(distributed=MPI(...))`).
        # More than one rank in all (instance_count * processes_per_host) enables it.
        keys["processes_per_host"] = KeySpec(
            Integer(1, MAX_API_INTEGER, "processes"), required=False, default="1"
        )
        keys["custom_mpi_options"] = KeySpec(
            Text(
                max_length=MAX_HYPERPARAMETER_VALUE_LENGTH,
                fix='give mpirun options, e.g. "-x NCCL_DEBUG=INFO", or remove the key',
            ),
            required=False,
            example="-x NCCL_DEBUG=INFO",
        )
        keys["profile_steps"] = KeySpec(Custom(check_profile_steps), required=False, example="5,25")
    return SectionSpec(step, keys, step=step)


def _job_step_subsections(step: str, kind: InstanceKind) -> list[MapSectionSpec]:
    subsections: list[MapSectionSpec] = []
    if kind == "processing":
        subsections.append(
            MapSectionSpec(
                f"{step}.arguments",
                entry_noun="arguments",
                # Each argument becomes two container arguments: --key and value.
                max_entries=MAX_CONTAINER_ARGUMENTS // 2,
                key_check=check_argument_name,
                value_check=length_check(MAX_CONTAINER_ARGUMENT_LENGTH, "value"),
            )
        )
    else:
        subsections.append(
            MapSectionSpec(
                f"{step}.hyperparameters",
                entry_noun="hyperparameters",
                max_entries=MAX_HYPERPARAMETERS,
                key_check=length_check(MAX_HYPERPARAMETER_KEY_LENGTH, "hyperparameter name"),
                value_check=length_check(MAX_HYPERPARAMETER_VALUE_LENGTH, "value"),
            )
        )
        subsections.append(
            MapSectionSpec(
                f"{step}.metrics",
                entry_noun="metric definitions",
                max_entries=MAX_METRIC_DEFINITIONS,
                key_check=check_metric_name,
                value_check=check_metric_regex,
            )
        )
    environment_length = (
        MAX_TRAINING_ENVIRONMENT_LENGTH if kind == "training" else MAX_PROCESSING_ENVIRONMENT_LENGTH
    )
    subsections.append(
        MapSectionSpec(
            f"{step}.environment",
            entry_noun="environment variables",
            max_entries=MAX_ENVIRONMENT_VARIABLES,
            key_check=environment_name_check(environment_length),
            value_check=length_check(environment_length, "value"),
        )
    )
    return subsections


PIPELINE_SECTION = SectionSpec(
    "pipeline",
    {
        "name": KeySpec(Custom(check_pipeline_name), example="ltr-ranking"),
        "steps": KeySpec(StepList(), example=", ".join(STEP_ORDER)),
        "dataset": KeySpec(Custom(check_dataset), example="sample_data/mslr"),
        "output_prefix": KeySpec(
            Custom(check_s3_uri), example="s3://harness-local-artifacts/ltr-ranking"
        ),
        "workspace": KeySpec(
            Text(fix='use a folder path relative to the project root, e.g. ".harness"'),
            required=False,
            default=".harness",
        ),
    },
)

SESSION_SECTION = SectionSpec(
    "session",
    {
        "target": KeySpec(Choice(("local", "cloud")), example="local"),
        "region": KeySpec(Custom(check_region), example="us-east-1"),
        "role_arn": KeySpec(
            Custom(check_role_arn),
            example="arn:aws:iam::111122223333:role/HarnessSageMakerExecution",
        ),
        "bucket": KeySpec(Custom(check_bucket), example="harness-local-artifacts"),
    },
)

CONDITION_SECTION = SectionSpec(
    "condition",
    {
        "metric": KeySpec(Text(fix='name the metric, e.g. "ndcg@10"'), example="ndcg@10"),
        "json_path": KeySpec(Custom(check_json_path), example="ranking_metrics.ndcg_at_10.value"),
        "comparison": KeySpec(
            Choice(
                COMPARISONS,
                hints={
                    "NotEquals": "SageMaker has no NotEquals condition, only Not wrapping "
                    "another condition, so use a comparison such as GreaterThan or LessThan",
                },
            ),
            example="GreaterThanOrEqualTo",
        ),
        "threshold": KeySpec(Number(example="0.30"), example="0.30"),
    },
    step="condition",
)

REGISTER_SECTION = SectionSpec(
    "register",
    {
        "model_package_group": KeySpec(Custom(check_model_package_group), example="ltr-ranking"),
        "content_type": KeySpec(Custom(check_content_type), example="application/json"),
        "inference_instance_type": KeySpec(InstanceType("hosting"), example="ml.m5.large"),
    },
    step="register",
)


# Experiment tracking in MLflow. Local runs always record into the workspace's sqlite store;
# a tracking server ARN in `uri` is used by the cloud target.
TRACKING_SECTION = SectionSpec(
    "tracking",
    {
        "enabled": KeySpec(Choice(("true", "false")), required=False, default="true"),
        "uri": KeySpec(Custom(check_tracking_uri), required=False, default="workspace"),
        "experiment": KeySpec(
            Text(
                re.compile(r"[^/\n]{1,500}"),
                invalid_message="not an MLflow experiment name",
                fix='use up to 500 characters without "/", e.g. "ltr-ranking"',
            ),
            required=False,
            example="ltr-ranking",
        ),
    },
    optional=True,
)


# A hyperparameter tuning job of the train step, in the terms of CreateHyperParameterTuningJob.
# Cross-section rules (Grid, Hyperband, the objective metric, tuned names) are in
# harness.config.tuning.
TUNING_SECTION = SectionSpec(
    "tuning",
    {
        "strategy": KeySpec(Choice(STRATEGIES), required=False, default="Bayesian"),
        "objective_metric": KeySpec(
            Text(fix='name a metric of [train.metrics], e.g. "validation:ndcg@10"'),
            example="validation:ndcg@10",
        ),
        "objective_type": KeySpec(Choice(OBJECTIVE_TYPES), example="Maximize"),
        "max_jobs": KeySpec(Integer(1, MAX_API_INTEGER), required=False, example="20"),
        "max_parallel_jobs": KeySpec(Integer(1, MAX_API_INTEGER), required=False, default="1"),
        "early_stopping": KeySpec(Choice(EARLY_STOPPING_TYPES), required=False, default="Off"),
        "random_seed": KeySpec(Integer(0, MAX_API_INTEGER), required=False, example="42"),
        "min_resource": KeySpec(
            Integer(1, MAX_HYPERBAND_RESOURCE, "epochs"), required=False, example="1"
        ),
        "max_resource": KeySpec(
            Integer(1, MAX_HYPERBAND_RESOURCE, "epochs"), required=False, example="30"
        ),
        "target_objective_value": KeySpec(Number(example="0.45"), required=False, example="0.45"),
        "max_jobs_not_improving": KeySpec(
            Integer(MIN_JOBS_NOT_IMPROVING, MAX_API_INTEGER), required=False, example="5"
        ),
        "warm_start_parents": KeySpec(
            Custom(check_parent_jobs), required=False, example="ltr-tuning-1"
        ),
        "warm_start_type": KeySpec(
            Choice(WARM_START_TYPES), required=False, example="IdenticalDataAndAlgorithm"
        ),
    },
    step="train",
    optional=True,
)

TUNING_RANGES_SECTION = MapSectionSpec(
    "tuning.ranges",
    entry_noun="hyperparameter ranges",
    max_entries=MAX_PARAMETER_RANGES,
    key_check=check_range_name,
    value_check=check_range,
)

# Settings of the cloud target only: `harness promote` and `harness run` with target = cloud.
CLOUD_SECTION = SectionSpec(
    "cloud",
    {
        "cache_expire_after": KeySpec(
            Custom(check_cache_expiry), required=False, default="P30D", example="P30D"
        ),
    },
    optional=True,
)


def _build_sections() -> dict[str, Spec]:
    sections: dict[str, Spec] = {
        PIPELINE_SECTION.name: PIPELINE_SECTION,
        SESSION_SECTION.name: SESSION_SECTION,
    }
    for step in STEP_ORDER:
        kind = JOB_KINDS.get(step)
        if kind is not None:
            sections[step] = _job_step_section(step, kind)
            for subsection in _job_step_subsections(step, kind):
                sections[subsection.name] = subsection
            if step == "train":
                sections[TUNING_SECTION.name] = TUNING_SECTION
                sections[TUNING_RANGES_SECTION.name] = TUNING_RANGES_SECTION
        elif step == "condition":
            sections[step] = CONDITION_SECTION
        elif step == "register":
            sections[step] = REGISTER_SECTION
    sections[CLOUD_SECTION.name] = CLOUD_SECTION
    sections[TRACKING_SECTION.name] = TRACKING_SECTION
    return sections


# Every known section, in the order that `harness config show` prints them.
SECTIONS: Mapping[str, Spec] = _build_sections()

"""Preflight of the cloud target: find locally, in about a second, what SageMaker would reject.

It runs before anything is uploaded and reports every problem at once:

- each request of the plan (CreateProcessingJob, CreateTrainingJob,
  CreateHyperParameterTuningJob, CreateModelPackage), and the CreatePipeline and
  StartPipelineExecution requests, against botocore's SageMaker service model. botocore's own
  validator checks required members and types, and this module the lengths, patterns and enums
  that botocore leaves to the service;
- the role ARN, region and bucket of [session], which a local run never uses for real;
- the container images, which must exist for the framework version, Python version and region.

Among what SageMaker's local mode lets through and the cloud rejects: an empty pipeline
parameter value (aws/sagemaker-python-sdk#4016), a job name or argument over its length limit,
an instance type one API accepts and another does not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from harness.config import Config
from harness.errors import HarnessError
from harness.plan import images
from harness.plan.build import Plan, PlanError

# The account number of the role in config.ini: AWS's documentation example, never a real one.
EXAMPLE_ACCOUNT = "111122223333"
# The bucket name of the local target in config.ini.
LOCAL_BUCKET = "harness-local-artifacts"

# A ClientRequestToken of the valid length, for requests that preflight only checks.
_REQUEST_TOKEN = "harness-preflight-" + "0" * 14

_OPERATIONS = {
    "processing": "CreateProcessingJob",
    "training": "CreateTrainingJob",
    "tuning": "CreateHyperParameterTuningJob",
    "register": "CreateModelPackage",
}


@dataclass(frozen=True)
class PreflightProblem:
    """One reason the cloud would reject the pipeline: where, the value, what and the fix."""

    where: str
    value: str
    message: str
    fix: str

    def __str__(self) -> str:
        value = f" = {self.value!r}" if self.value else ""
        return f"{self.where}{value}: {self.message}. Fix: {self.fix}."


class PreflightError(HarnessError):
    def __init__(self, problems: list[PreflightProblem]) -> None:
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        lines = [f"Preflight found {len(problems)} {noun}; nothing was uploaded:"]
        lines += [f"  {problem}" for problem in problems]
        super().__init__("\n".join(lines))


def preflight(
    config: Config, plan: Plan | None, parameters: Mapping[str, str] | None = None
) -> list[PreflightProblem]:
    """Return every problem of `plan` (None when it could not be built) and `config`."""
    problems = list(_session_problems(config))
    problems += _explain_problems(config)
    problems += _image_problems(config)
    if plan is not None:
        for job in plan.jobs:
            operation = _OPERATIONS.get(job.kind)
            if operation is None:
                continue
            request = dict(job.request)
            if job.kind == "register":
                # The condition decides the status at run time; both values are valid.
                request["ModelApprovalStatus"] = "Approved"
            problems += _request_problems(operation, request, f"step {job.step} ({operation})")
        problems += _request_problems(
            "CreatePipeline",
            {
                "PipelineName": plan.pipeline,
                "PipelineDefinition": "{}",
                "RoleArn": config.session.role_arn,
                "ClientRequestToken": _REQUEST_TOKEN,
            },
            "[pipeline] name / [session] role_arn (CreatePipeline)",
        )
    start = {
        "PipelineName": config.pipeline.name,
        "PipelineParameters": [
            {"Name": name, "Value": value} for name, value in (parameters or {}).items()
        ],
        "ClientRequestToken": _REQUEST_TOKEN,
    }
    problems += _request_problems(
        "StartPipelineExecution", start, "--parameter (StartPipelineExecution)"
    )
    problems += _empty_parameter_problems(parameters or {})
    problems += _parameter_problems(config, parameters or {})
    return problems


def _parameter_problems(config: Config, parameters: Mapping[str, str]) -> list[PreflightProblem]:
    """Return the unknown names and non-numbers among the values for the pipeline parameters."""
    from harness.cloud.compile import pipeline_parameters

    known = pipeline_parameters(config)
    problems = []
    for name, value in parameters.items():
        if name not in known:
            close = _close(name, list(known))
            problems.append(
                PreflightProblem(
                    f"--parameter {name}",
                    value,
                    "the pipeline has no such parameter",
                    f'use "{close}"' if close else f"use one of: {', '.join(known) or 'none'}",
                )
            )
        elif value and known[name] == "Float":
            try:
                float(value)
            except ValueError:
                problems.append(
                    PreflightProblem(
                        f"--parameter {name}",
                        value,
                        "not a number, and the parameter is a Float",
                        f"give a number, e.g. --parameter {name}=0.35",
                    )
                )
    return problems


def _empty_parameter_problems(parameters: Mapping[str, str]) -> list[PreflightProblem]:
    # botocore's model allows an empty value and SageMaker rejects it ("string \"\" is too
    # short"); local mode accepted it until the SDK added its own check
    # (aws/sagemaker-python-sdk#4016).
    return [
        PreflightProblem(
            f"--parameter {name}",
            value,
            "SageMaker rejects an empty pipeline parameter value",
            f"give {name} a value, or leave it out to use its default",
        )
        for name, value in parameters.items()
        if value == ""
    ]


def check(config: Config, build: Any, parameters: Mapping[str, str] | None = None) -> Plan:
    """Build the plan with `build(config)` and raise PreflightError if anything would fail."""
    plan = None
    problems: list[PreflightProblem] = []
    try:
        # A missing image gets a placeholder, so that the requests are checked too;
        # _image_problems reports it.
        with images.lenient():
            plan = build(config)
    except PlanError as error:
        message, _, fix = str(error).partition(" Fix: ")
        problems.append(PreflightProblem("plan", "", message.rstrip("."), fix.rstrip(".")))
    problems = problems + preflight(config, plan, parameters)
    if problems:
        raise PreflightError(_unique(problems))
    assert plan is not None
    return plan


def _unique(problems: list[PreflightProblem]) -> list[PreflightProblem]:
    seen: set[str] = set()
    unique = []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            unique.append(problem)
    return unique


# [session], the images.


def _where(config: Config, section: str, key: str) -> str:
    """Return "file:line [section] key", where the effective value was set."""
    entry = config.values.get(section, {}).get(key)
    origin = f"{entry[1]} " if entry is not None and entry[1].file != "default" else ""
    return f"{origin}[{section}] {key}"


def _session_problems(config: Config) -> Iterator[PreflightProblem]:
    session = config.session
    account = session.role_arn.split(":")[4] if session.role_arn.count(":") >= 5 else ""
    if account == EXAMPLE_ACCOUNT:
        yield PreflightProblem(
            _where(config, "session", "role_arn"),
            session.role_arn,
            f"{EXAMPLE_ACCOUNT} is the example account of AWS's documentation",
            "set the ARN of your SageMaker execution role, e.g. in config.local.ini "
            "(the README lists the permissions it needs)",
        )
    regions = _sagemaker_regions()
    if session.region not in regions:
        close = _close(session.region, sorted(regions))
        yield PreflightProblem(
            _where(config, "session", "region"),
            session.region,
            "SageMaker is not offered in this region",
            f'use "{close}"' if close else f"use one of {', '.join(sorted(regions))}",
        )
    if session.bucket == LOCAL_BUCKET:
        yield PreflightProblem(
            _where(config, "session", "bucket"),
            session.bucket,
            "this is the local target's bucket, not one of your account",
            "set the name of an S3 bucket that your account owns in the same region",
        )
    prefix_bucket = config.pipeline.output_prefix.removeprefix("s3://").split("/")[0]
    if prefix_bucket != session.bucket:
        yield PreflightProblem(
            _where(config, "pipeline", "output_prefix"),
            config.pipeline.output_prefix,
            f"its bucket is not [session] bucket ({session.bucket}), where promote uploads "
            "the code",
            f"use s3://{session.bucket}/{config.pipeline.name}",
        )


def _explain_problems(config: Config) -> list[PreflightProblem]:
    # NOTE: the explain step imports shap, which SageMaker's TensorFlow images lack, so its
    # job would fail after the steps before it were paid for.
    if "explain" not in config.pipeline.steps:
        return []
    return [
        PreflightProblem(
            _where(config, "pipeline", "steps"),
            ", ".join(config.pipeline.steps),
            "explain imports shap, which SageMaker's TensorFlow images do not include, so its "
            "job would fail in the cloud",
            "leave explain out of [pipeline] steps for the cloud, e.g. in config.local.ini",
        )
    ]


@functools.cache
def _sagemaker_regions() -> frozenset[str]:
    import botocore.session

    session = botocore.session.get_session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("sagemaker", partition))
    return frozenset(regions)


def _image_problems(config: Config) -> list[PreflightProblem]:
    problems: list[PreflightProblem] = []
    region = config.session.region
    if region not in _sagemaker_regions():
        # No image exists in an unknown region, and its own problem names the fix.
        return problems
    train = config.steps.get("train")
    framework_version = (train.framework_version if train else None) or "2.18"
    checks: list[tuple[str, Any]] = []
    if train is not None:
        checks.append(
            (
                "[train] framework_version / py_version",
                lambda: images.tensorflow_training_image(
                    region, framework_version, train.py_version or "py310", train.instance_type
                ),
            )
        )
    if config.register is not None:
        checks.append(
            (
                "[train] framework_version (inference image of [register])",
                lambda: images.tensorflow_inference_image(region, framework_version),
            )
        )
    if any(step in config.steps for step in ("prepare", "evaluate")):
        checks.append(
            (
                "[session] region (Spark processing image)",
                lambda: images.spark_processing_image(region),
            )
        )
    for where, resolve in checks:
        try:
            resolve()
        except images.ImageError as error:
            message, _, fix = str(error).partition(" Fix: ")
            problems.append(PreflightProblem(where, "", message.rstrip("."), fix.rstrip(".")))
    return problems


# Requests against botocore's service model.


@functools.cache
def _service_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def _request_problems(
    operation: str, request: dict[str, Any], where: str
) -> list[PreflightProblem]:
    from botocore.validate import ParamValidator

    shape = _service_model().operation_model(operation).input_shape
    problems = []
    report = ParamValidator().validate(request, shape)
    for error in report._errors:  # botocore keeps no public list of its errors
        kind, name, details = error[0], error[1], error[2]
        problems.append(
            PreflightProblem(
                f"{where} {name}", "", _botocore_message(kind, details), _botocore_fix(kind)
            )
        )
    problems += list(_constraint_problems(shape, request, where, ""))
    return problems


def _botocore_message(kind: str, details: dict[str, Any]) -> str:
    if kind == "missing required field":
        return f"the required member {details['required_name']} is missing"
    if kind == "unknown field":
        return f"{details['unknown_param']} is not a member (valid: {', '.join(details['valid_names'])})"
    if kind == "invalid type":
        return f"the value has type {type(details['param']).__name__}, not one of {', '.join(details['valid_types'])}"
    if kind == "invalid range":
        return f"{details['param']} is below the minimum {details['min_allowed']}"
    if kind == "invalid length":
        return f"a length of {details['param']}, below the minimum {details['min_allowed']}"
    return f"{kind}: {details}"


def _botocore_fix(kind: str) -> str:
    if kind == "invalid length":
        return "give a non-empty value, or leave the setting out"
    return "correct the configuration value that sets it"


def _constraint_problems(
    shape: Any, value: Any, where: str, path: str
) -> Iterator[PreflightProblem]:
    """Yield the max length, pattern and enum violations that botocore does not check."""
    if value is None:
        return
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                yield from _constraint_problems(member, value[name], where, _join(path, name))
    elif kind == "list" and isinstance(value, list):
        yield from _count_problems(shape, len(value), f"{where} {path}")
        for index, item in enumerate(value):
            yield from _constraint_problems(shape.member, item, where, f"{path}[{index}]")
    elif kind == "map" and isinstance(value, dict):
        yield from _count_problems(shape, len(value), f"{where} {path}")
        for key, item in value.items():
            yield from _constraint_problems(shape.key, key, where, f"{path} key {key!r}")
            yield from _constraint_problems(shape.value, item, where, _join(path, str(key)))
    elif kind == "string" and isinstance(value, str):
        yield from _string_problems(shape, value, f"{where} {path}")
    elif kind in ("integer", "long") and isinstance(value, int):
        maximum = shape.metadata.get("max")
        if maximum is not None and value > maximum:
            yield PreflightProblem(
                f"{where} {path}",
                str(value),
                f"above the maximum {maximum}",
                f"use at most {maximum}",
            )


def _count_problems(shape: Any, count: int, where: str) -> Iterator[PreflightProblem]:
    maximum = shape.metadata.get("max")
    if maximum is not None and count > maximum:
        yield PreflightProblem(
            where,
            "",
            f"{count} entries, more than the limit of {maximum}",
            f"keep at most {maximum}",
        )


def _string_problems(shape: Any, value: str, where: str) -> Iterator[PreflightProblem]:
    if shape.enum and value not in shape.enum:
        close = _close(value, shape.enum)
        yield PreflightProblem(
            where,
            value,
            f"not a valid {shape.name}",
            f"use {close}"
            if close
            else f"use one of {', '.join(shape.enum[:12])}{', ...' if len(shape.enum) > 12 else ''}",
        )
        return
    maximum = shape.metadata.get("max")
    if maximum is not None and len(value) > maximum:
        yield PreflightProblem(
            where,
            _shorten(value),
            f"{len(value)} characters, more than the limit of {maximum}",
            f"shorten it to at most {maximum}",
        )
    pattern = _compiled(shape.metadata.get("pattern"))
    if pattern is not None and value and not pattern.fullmatch(value):
        yield PreflightProblem(
            where,
            _shorten(value),
            f"does not match the pattern {shape.metadata['pattern']} of {shape.name}",
            "change the value to match it",
        )


@functools.cache
def _compiled(pattern: str | None) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        # A few of the model's patterns use Java-only syntax; the service checks those.
        return None


def _close(value: str, options: list[str]) -> str | None:
    from difflib import get_close_matches

    close = get_close_matches(value, options, n=1)
    return close[0] if close else None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _shorten(value: str) -> str:
    return value if len(value) <= 60 else value[:57] + "..."

"""Value types and checks for configuration values.

A check returns None for a valid value, or an Issue with what is wrong and the fix. SageMaker
limits and name rules come from botocore's SageMaker service model (2017-07-24), and bucket
name rules from the Amazon S3 User Guide.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import NamedTuple

from harness.config.graph import JOB_KINDS
from harness.config.instance_types import InstanceKind, check_instance_type


class Issue(NamedTuple):
    """A problem with one value: its description (``message``) and remedy (``fix``)."""

    message: str
    fix: str


@dataclass(frozen=True)
class CheckContext:
    """Facts that checks need beyond the value itself."""

    project_root: Path


Check = Callable[[str, CheckContext], "Issue | None"]


def did_you_mean(word: str, candidates: Sequence[str]) -> str | None:
    """Return the candidate closest to ``word``, ignoring case, or None if none is close."""
    by_folded = {candidate.lower(): candidate for candidate in candidates}
    close = get_close_matches(word.lower(), list(by_folded), n=1, cutoff=0.6)
    return by_folded[close[0]] if close else None


def _comment_hint(value: str) -> str:
    # The loader keeps text after " #" as part of the value, as INI readers without inline
    # comments do, so the fix mentions that when it is the likely cause.
    if re.search(r"\s[#;]", value):
        return ". Comments must be on a line of their own"
    return ""


# Generic value types. Each has check() and convert(), and convert() runs only on values that
# passed check().


class ValueType:
    """A string value with no constraint beyond being present."""

    def check(self, value: str, context: CheckContext) -> Issue | None:
        return None

    def convert(self, value: str) -> object:
        return value


@dataclass(frozen=True)
class Text(ValueType):
    """A non-empty string, optionally matching ``pattern`` and at most ``max_length`` long."""

    pattern: re.Pattern[str] | None = None
    max_length: int | None = None
    invalid_message: str = "invalid value"
    fix: str = "correct the value"

    def check(self, value: str, context: CheckContext) -> Issue | None:
        if not value:
            return Issue("empty value", self.fix)
        if self.max_length is not None and len(value) > self.max_length:
            return Issue(
                f"too long: {len(value)} characters, the maximum is {self.max_length}",
                f"shorten it to at most {self.max_length} characters",
            )
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return Issue(self.invalid_message, self.fix + _comment_hint(value))
        return None


@dataclass(frozen=True)
class Integer(ValueType):
    """A whole number from ``minimum`` to ``maximum``."""

    minimum: int
    maximum: int
    unit: str = ""

    def check(self, value: str, context: CheckContext) -> Issue | None:
        unit = f" of {self.unit}" if self.unit else ""
        allowed = f"a whole number{unit} from {self.minimum} to {self.maximum}"
        if not re.fullmatch(r"[+-]?\d+", value):
            return Issue("not an integer", f"use {allowed}" + _comment_hint(value))
        if not self.minimum <= int(value) <= self.maximum:
            return Issue(f"out of range {self.minimum}..{self.maximum}", f"use {allowed}")
        return None

    def convert(self, value: str) -> int:
        return int(value)


@dataclass(frozen=True)
class Number(ValueType):
    """A finite floating-point number."""

    example: str = "0.5"

    def check(self, value: str, context: CheckContext) -> Issue | None:
        try:
            number = float(value)
        except ValueError:
            return Issue(
                "not a number",
                f"use a decimal number such as {self.example}" + _comment_hint(value),
            )
        if not math.isfinite(number):
            return Issue("not a finite number", f"use a decimal number such as {self.example}")
        return None

    def convert(self, value: str) -> float:
        return float(value)


_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


class Boolean(ValueType):
    """true/false, yes/no, on/off or 1/0, in any case."""

    def check(self, value: str, context: CheckContext) -> Issue | None:
        if value.lower() not in _TRUE_WORDS + _FALSE_WORDS:
            return Issue("not a boolean", "use true or false" + _comment_hint(value))
        return None

    def convert(self, value: str) -> bool:
        return value.lower() in _TRUE_WORDS


@dataclass(frozen=True)
class Choice(ValueType):
    """One of ``options``, matched exactly. ``hints`` maps likely mistakes to their fix."""

    options: tuple[str, ...]
    hints: Mapping[str, str] = field(default_factory=dict)

    def check(self, value: str, context: CheckContext) -> Issue | None:
        if value in self.options:
            return None
        listed = ", ".join(self.options)
        if value in self.hints:
            return Issue("invalid choice", f"{self.hints[value]} (one of: {listed})")
        close = did_you_mean(value, self.options)
        if close is not None:
            return Issue("invalid choice", f'use "{close}" (one of: {listed})')
        return Issue("invalid choice", f"use one of: {listed}" + _comment_hint(value))


@dataclass(frozen=True)
class Custom(ValueType):
    """A string checked by a function."""

    function: Check

    def check(self, value: str, context: CheckContext) -> Issue | None:
        return self.function(value, context)


@dataclass(frozen=True)
class InstanceType(ValueType):
    """A SageMaker instance type offered for one kind of job."""

    kind: InstanceKind

    def check(self, value: str, context: CheckContext) -> Issue | None:
        found = check_instance_type(value, self.kind)
        return None if found is None else Issue(*found)


# Names and identifiers.

# SageMaker job names (ProcessingJobName, TrainingJobName) are at most 63 characters. harness
# names a job <pipeline name>-<step>-<run id>, with a 14-character run id.
MAX_JOB_NAME_LENGTH = 63
RUN_ID_LENGTH = 14
LONGEST_JOB_STEP_NAME = max(JOB_KINDS, key=len)
MAX_PIPELINE_NAME_LENGTH = MAX_JOB_NAME_LENGTH - RUN_ID_LENGTH - len(LONGEST_JOB_STEP_NAME) - 2

# SageMaker's PipelineName and EntityName patterns (service model 2017-07-24).
_SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")


def _name_suggestion(value: str, max_length: int) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", value).strip("-")[:max_length].rstrip("-")
    return cleaned or "ltr-ranking"


def check_pipeline_name(value: str, context: CheckContext) -> Issue | None:
    if not _SAGEMAKER_NAME.fullmatch(value):
        suggestion = _name_suggestion(value, MAX_PIPELINE_NAME_LENGTH)
        return Issue(
            "invalid pipeline name: SageMaker allows only letters, digits and hyphens, "
            "starting and ending with a letter or digit",
            f'use a name such as "{suggestion}"',
        )
    if len(value) > MAX_PIPELINE_NAME_LENGTH:
        return Issue(
            f"pipeline name too long: {len(value)} characters",
            f"shorten it to at most {MAX_PIPELINE_NAME_LENGTH} characters, so that job names "
            f"<name>-<step>-<{RUN_ID_LENGTH}-character run id> fit SageMaker's "
            f"{MAX_JOB_NAME_LENGTH}-character limit for every step",
        )
    return None


def check_model_package_group(value: str, context: CheckContext) -> Issue | None:
    if _SAGEMAKER_NAME.fullmatch(value) and len(value) <= 63:
        return None
    return Issue(
        "invalid model package group name: SageMaker allows 1 to 63 letters, digits and "
        "hyphens, starting and ending with a letter or digit",
        f'use a name such as "{_name_suggestion(value, 63)}"',
    )


_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


def check_region(value: str, context: CheckContext) -> Issue | None:
    if _REGION.fullmatch(value):
        return None
    return Issue(
        "not an AWS region name",
        'use a region code such as "us-east-1" or "eu-west-1"' + _comment_hint(value),
    )


# SageMaker's RoleArn pattern (service model 2017-07-24), split into path and name.
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[a-zA-Z0-9_+=,.@/-]+")


def check_role_arn(value: str, context: CheckContext) -> Issue | None:
    if _ROLE_ARN.fullmatch(value) and 20 <= len(value) <= 2048 and not value.endswith("/"):
        return None
    return Issue(
        "not an IAM role ARN",
        "use arn:aws:iam::<12-digit account id>:role/<path and name>, e.g. "
        '"arn:aws:iam::111122223333:role/HarnessSageMakerExecution"',
    )


def check_profile_steps(value: str, context: CheckContext) -> Issue | None:
    parts = value.split(",")
    if len(parts) == 2 and all(part.strip().isdigit() for part in parts):
        first, last = (int(part) for part in parts)
        if 1 <= first <= last:
            return None
    return Issue(
        "not a range of training steps",
        'use FIRST,LAST with 1 <= FIRST <= LAST, e.g. "5,25" traces steps 5 to 25',
    )


# ARNs of SageMaker managed MLflow: a tracking server or a serverless MLflow app.
_MLFLOW_ARN = re.compile(
    r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:(mlflow-tracking-server|mlflow-app)/[A-Za-z0-9-]{1,256}"
)


def check_tracking_uri(value: str, context: CheckContext) -> Issue | None:
    if value == "workspace" or _MLFLOW_ARN.fullmatch(value):
        return None
    return Issue(
        "not a tracking store",
        'use "workspace" (an MLflow sqlite store in the workspace) or the ARN of a SageMaker '
        "managed MLflow tracking server, e.g. "
        '"arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/ltr-tracking"',
    )


# Prefixes and suffixes that S3 reserves, from "General purpose bucket naming rules" in the
# Amazon S3 User Guide, which also gives the other rules checked below.
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_issue(bucket: str) -> str | None:
    """Return what breaks the S3 general purpose bucket naming rules, or None."""
    if not 3 <= len(bucket) <= 63:
        return f"bucket names are 3 to 63 characters long, this one is {len(bucket)}"
    if not re.fullmatch(r"[a-z0-9.-]+", bucket):
        return "bucket names contain only lowercase letters, digits, dots and hyphens"
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        return "bucket names start and end with a letter or digit"
    if ".." in bucket:
        return "bucket names contain no two adjacent dots"
    try:
        ipaddress.IPv4Address(bucket)
    except ValueError:
        pass
    else:
        return "bucket names are not IP addresses"
    for prefix in _RESERVED_BUCKET_PREFIXES:
        if bucket.startswith(prefix):
            return f'bucket names do not start with "{prefix}"'
    for suffix in _RESERVED_BUCKET_SUFFIXES:
        if bucket.endswith(suffix):
            return f'bucket names do not end with "{suffix}"'
    return None


def _bucket_suggestion(bucket: str) -> str:
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", bucket.lower())
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip(".-")[:63].strip(".-")
    if len(cleaned) < 3 or bucket_name_issue(cleaned) is not None:
        return "harness-artifacts"
    return cleaned


def check_bucket(value: str, context: CheckContext) -> Issue | None:
    reason = bucket_name_issue(value)
    if reason is None:
        return None
    return Issue(
        f"invalid S3 bucket name: {reason}",
        f'use a name such as "{_bucket_suggestion(value)}"',
    )


def check_s3_uri(value: str, context: CheckContext) -> Issue | None:
    if not value.startswith("s3://"):
        rest = re.sub(r"^[a-zA-Z0-9]*:/*", "", value).lstrip("/")
        example = f"s3://{rest}" if rest else "s3://harness-local-artifacts/ltr-ranking"
        return Issue("not an S3 URI", f'use s3://<bucket>/<prefix>, e.g. "{example}"')
    bucket = value[len("s3://") :].split("/", 1)[0]
    if not bucket:
        return Issue("S3 URI has no bucket", "use s3://<bucket>/<prefix>")
    reason = bucket_name_issue(bucket)
    if reason is not None:
        return Issue(
            f'invalid bucket "{bucket}" in S3 URI: {reason}',
            f'use a valid bucket name such as "{_bucket_suggestion(bucket)}"',
        )
    return None


def check_dataset(value: str, context: CheckContext) -> Issue | None:
    """Check the form only. validate_dataset() checks that a local folder exists."""
    if value.startswith("s3:"):
        return check_s3_uri(value, context)
    if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", value):
        return Issue(
            "unsupported URI scheme",
            "use a local folder relative to the project root or an s3:// URI",
        )
    return None


def check_entry_point(value: str, context: CheckContext) -> Issue | None:
    root = context.project_root
    steps_folder = (root / "steps").resolve()
    path = (root / value).resolve()
    if not path.is_relative_to(steps_folder):
        return Issue(
            "entry point is outside the steps/ folder, which harness ships as the job's code",
            "move the script under steps/ and give its path relative to the project root, "
            'e.g. "steps/<step>/<script>.py"',
        )
    if not path.is_file():
        return Issue(
            f"file not found: {path}",
            f"create the script or correct the path, which is relative to the project root {root}",
        )
    return None


# JsonGet paths: dotted keys, each with optional [N] list indexes.
_JSON_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\[\d+\])*(\.[A-Za-z_][A-Za-z0-9_-]*(\[\d+\])*)*")


# An ISO 8601 duration as SageMaker's CacheConfig ExpireAfter takes it: days, weeks or months,
# or hours and minutes after T.
_ISO_DURATION = re.compile(r"P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?)?")


def check_cache_expiry(value: str, context: CheckContext) -> Issue | None:
    if value == "off" or _ISO_DURATION.fullmatch(value):
        return None
    return Issue(
        "not an ISO 8601 duration",
        'write how long a cached step stays valid, e.g. "P30D" (30 days) or "PT12H" '
        '(12 hours), or "off" to run every step each time',
    )


def check_json_path(value: str, context: CheckContext) -> Issue | None:
    if _JSON_PATH.fullmatch(value):
        return None
    return Issue(
        "invalid JSON path",
        "use dotted keys with optional [N] list indexes, "
        'e.g. "ranking_metrics.ndcg_at_10.value" or "metrics[0].value"',
    )


_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*(\s*;\s*[\w!#$&^.+-]+=[^;]+)*"
)


def check_content_type(value: str, context: CheckContext) -> Issue | None:
    if len(value) <= 256 and _MEDIA_TYPE.fullmatch(value):
        return None
    return Issue("not a media type", 'use type/subtype, e.g. "application/json" or "text/csv"')


# Free-key sub-sections: checks for keys and values.

KeyCheck = Callable[[str], "Issue | None"]

_ENVIRONMENT_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def environment_name_check(max_length: int) -> KeyCheck:
    def check(name: str) -> Issue | None:
        if not _ENVIRONMENT_NAME.fullmatch(name):
            suggestion = re.sub(r"[^a-zA-Z0-9_]", "_", name)
            if not re.match(r"[a-zA-Z_]", suggestion):
                suggestion = "_" + suggestion
            return Issue(
                "invalid environment variable name: use letters, digits and underscores, "
                "not starting with a digit",
                f'rename it, e.g. to "{suggestion}"',
            )
        return length_check(max_length, "name")(name)

    return check


def length_check(max_length: int, noun: str) -> KeyCheck:
    def check(text: str) -> Issue | None:
        if len(text) > max_length:
            return Issue(
                f"{noun} too long: {len(text)} characters, SageMaker's maximum is {max_length}",
                f"shorten the {noun} to at most {max_length} characters",
            )
        return None

    return check


_ARGUMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_argument_name(name: str) -> Issue | None:
    if not _ARGUMENT_NAME.fullmatch(name):
        return Issue(
            "invalid argument name: it becomes --<name>, so use letters, digits, "
            "hyphens, underscores and dots",
            f'rename it, e.g. to "{re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "name"}"',
        )
    return length_check(MAX_CONTAINER_ARGUMENT_LENGTH - 2, "argument name")(name)


def check_metric_name(name: str) -> Issue | None:
    return length_check(MAX_METRIC_NAME_LENGTH, "metric name")(name)


def check_metric_regex(regex: str) -> Issue | None:
    # NOTE: this compiles the regex with Python's re module. SageMaker's own regex engine may
    # accept or reject a few patterns differently.
    if not regex:
        return Issue(
            "empty metric regex", r'use a regex with one capture group, e.g. "loss=([0-9.]+)"'
        )
    too_long = length_check(MAX_METRIC_REGEX_LENGTH, "regex")(regex)
    if too_long is not None:
        return too_long
    try:
        groups = re.compile(regex).groups
    except re.error as error:
        return Issue(
            f"invalid regex: {error}",
            r'correct the regex, e.g. "loss=([0-9.eE+-]+)"',
        )
    if groups != 1:
        return Issue(
            f"metric regex has {groups} capture groups, SageMaker reads the value from exactly one",
            r'capture only the number, e.g. "loss=([0-9.eE+-]+)", and make other groups '
            r"non-capturing with (?:...)",
        )
    return None


# SageMaker limits from botocore's SageMaker service model (2017-07-24).
MAX_HYPERPARAMETERS = 100  # HyperParameters map
MAX_HYPERPARAMETER_KEY_LENGTH = 256  # HyperParameterKey
MAX_HYPERPARAMETER_VALUE_LENGTH = 2500  # HyperParameterValue
MAX_METRIC_DEFINITIONS = 40  # MetricDefinitionList
MAX_METRIC_NAME_LENGTH = 255  # MetricName
MAX_METRIC_REGEX_LENGTH = 500  # MetricRegex
MAX_ENVIRONMENT_VARIABLES = 100  # TrainingEnvironmentMap, ProcessingEnvironmentMap
MAX_TRAINING_ENVIRONMENT_LENGTH = 512  # TrainingEnvironmentKey and TrainingEnvironmentValue
MAX_PROCESSING_ENVIRONMENT_LENGTH = 256  # ProcessingEnvironmentKey and ProcessingEnvironmentValue
MAX_CONTAINER_ARGUMENTS = 100  # ContainerArguments; each [<step>.arguments] key uses two
MAX_CONTAINER_ARGUMENT_LENGTH = 256  # ContainerArgument
MAX_PROCESSING_RUNTIME_SECONDS = 777_600  # ProcessingMaxRuntimeInSeconds (9 days)
MAX_PROCESSING_INSTANCE_COUNT = 100  # ProcessingInstanceCount
MAX_PROCESSING_VOLUME_SIZE_GB = 16_384  # ProcessingVolumeSizeInGB
# The MaxRuntimeInSeconds shape sets no maximum, but StoppingCondition's documentation in the
# same model gives 28 days.
MAX_TRAINING_RUNTIME_SECONDS = 2_419_200

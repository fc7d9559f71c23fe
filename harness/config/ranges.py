"""The range syntax of ``[tuning.ranges]`` and the value checks of ``[tuning]``.

Each key of ``[tuning.ranges]`` names a hyperparameter, and its value is one range:

    integer MIN..MAX [SCALING]        whole numbers from MIN to MAX
    continuous MIN..MAX [SCALING]     floating-point numbers from MIN to MAX
    categorical VALUE | VALUE | ...   the values listed, which may contain commas

SCALING is a SageMaker scaling type (Auto when left out). A categorical value that contains
"|" or starts or ends with a space is written as a JSON string, such as "a|b".

Limits come from botocore's SageMaker service model (2017-07-24) and the scaling rules from
the ScalingType documentation of ContinuousParameterRange and IntegerParameterRange there.
"""

from __future__ import annotations

import json
import math
import re

from harness.config.checks import CheckContext, Issue, did_you_mean, length_check
from harness.config.model import ParameterRange

# SageMaker limits from botocore's SageMaker service model (2017-07-24).
# IntegerParameterRanges, ContinuousParameterRanges and CategoricalParameterRanges each hold at
# most 30 ranges, and the ParameterRanges documentation caps their sum at the same 30.
MAX_PARAMETER_RANGES = 30
MAX_CATEGORICAL_VALUES = 30  # ParameterValues
MAX_PARAMETER_VALUE_LENGTH = 256  # ParameterValue
MAX_PARAMETER_NAME_LENGTH = 256  # ParameterKey
MAX_PARENT_TUNING_JOBS = 5  # ParentHyperParameterTuningJobs
MAX_TUNING_JOB_NAME_LENGTH = 32  # HyperParameterTuningJobName
# HyperbandStrategyConfig's MaxResource documentation gives 20,000 epochs as the maximum.
MAX_HYPERBAND_RESOURCE = 20_000
MIN_JOBS_NOT_IMPROVING = 3  # MaxNumberOfTrainingJobsNotImproving
# Integer fields of the API (MaxNumberOfTrainingJobs, RandomSeed, ...) are 32-bit.
MAX_API_INTEGER = 2**31 - 1

STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
OBJECTIVE_TYPES = ("Maximize", "Minimize")
EARLY_STOPPING_TYPES = ("Off", "Auto")
WARM_START_TYPES = ("IdenticalDataAndAlgorithm", "TransferLearning")
SCALING_TYPES = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")

# Range keyword -> the kind of range in the API's ParameterRanges.
RANGE_KINDS = {"integer": "Integer", "continuous": "Continuous", "categorical": "Categorical"}

RANGE_EXAMPLES = (
    '"integer 4..32", "continuous 0.0001..0.1 Logarithmic" or "categorical 128,64 | 64,32"'
)

_NUMERIC_RANGE = re.compile(r"(?P<min>\S+?)\s*\.\.\s*(?P<max>\S+?)(?:\s+(?P<scaling>\S+))?")
_INTEGER = re.compile(r"[+-]?\d+")
_TUNING_JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")


def parse_range(name: str, text: str) -> ParameterRange | Issue:
    """Parse one ``[tuning.ranges]`` value, or return what is wrong with it."""
    match = re.fullmatch(r"(\S*)\s*(.*)", text.strip(), flags=re.DOTALL)
    keyword, rest = (match.group(1), match.group(2)) if match else ("", "")
    kind = RANGE_KINDS.get(keyword)
    if kind is None:
        guess = did_you_mean(keyword, list(RANGE_KINDS)) if keyword else None
        start = f'use "{guess}"' if guess else "start with integer, continuous or categorical"
        return Issue(
            f'unknown range kind "{keyword}"' if keyword else "empty range",
            f"{start}, e.g. {RANGE_EXAMPLES}",
        )
    if kind == "Categorical":
        return _parse_categorical(name, rest)
    return _parse_numeric(name, kind, rest)


def _parse_numeric(name: str, kind: str, text: str) -> ParameterRange | Issue:
    keyword = kind.lower()
    example = "integer 4..32 Linear" if kind == "Integer" else "continuous 0.0001..0.1 Logarithmic"
    match = _NUMERIC_RANGE.fullmatch(text)
    if match is None:
        return Issue(
            f"invalid {keyword} range: expected MIN..MAX and an optional scaling type",
            f'write it as "{example}"',
        )
    low_text, high_text = match.group("min"), match.group("max")
    scaling = match.group("scaling") or "Auto"

    numbers: list[float] = []
    for label, number_text in (("MinValue", low_text), ("MaxValue", high_text)):
        number = _parse_number(kind, number_text)
        if number is None:
            noun = "a whole number" if kind == "Integer" else "a finite number"
            return Issue(f'{label} "{number_text}" is not {noun}', f'write it as "{example}"')
        numbers.append(number)
    low, high = numbers

    if low > high:
        return Issue(
            f"MinValue {low_text} is greater than MaxValue {high_text}",
            f'put the smaller value first: "{keyword} {high_text}..{low_text}"',
        )
    if scaling not in SCALING_TYPES:
        guess = did_you_mean(scaling, SCALING_TYPES)
        hint = f'use "{guess}"' if guess else "use one"
        return Issue(f'invalid scaling type "{scaling}"', f"{hint} of: {', '.join(SCALING_TYPES)}")
    issue = _scaling_issue(kind, scaling, low, high)
    if issue is not None:
        return issue
    return ParameterRange(name, kind, low_text, high_text, scaling)


def _parse_number(kind: str, text: str) -> float | None:
    if kind == "Integer":
        return int(text) if _INTEGER.fullmatch(text) else None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _scaling_issue(kind: str, scaling: str, low: float, high: float) -> Issue | None:
    if scaling == "Logarithmic" and low <= 0:
        return Issue(
            "Logarithmic scaling needs MinValue greater than 0",
            "raise MinValue above 0, or use Linear scaling",
        )
    if scaling == "ReverseLogarithmic" and kind == "Integer":
        return Issue(
            "ReverseLogarithmic scaling applies only to continuous ranges",
            "use Linear or Logarithmic scaling, or make it a continuous range",
        )
    if scaling == "ReverseLogarithmic" and not (0 <= low and high < 1):
        return Issue(
            "ReverseLogarithmic scaling needs 0 <= MinValue and MaxValue < 1",
            "keep the range within 0 <= x < 1, or use Linear scaling",
        )
    return None


def _parse_categorical(name: str, text: str) -> ParameterRange | Issue:
    values = split_categorical_values(text)
    if isinstance(values, Issue):
        return values
    if not values:
        return Issue("categorical range without values", 'list them, e.g. "categorical a | b"')
    if len(values) > MAX_CATEGORICAL_VALUES:
        return Issue(
            f"{len(values)} categorical values, SageMaker accepts at most {MAX_CATEGORICAL_VALUES}",
            f"remove {len(values) - MAX_CATEGORICAL_VALUES} of them",
        )
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        listed = ", ".join(json.dumps(value) for value in repeated)
        return Issue(f"categorical value listed twice: {listed}", "list each value once")
    for value in values:
        if len(value) > MAX_PARAMETER_VALUE_LENGTH:
            return Issue(
                f"categorical value too long: {len(value)} characters, SageMaker's maximum "
                f"is {MAX_PARAMETER_VALUE_LENGTH}",
                f"shorten it to at most {MAX_PARAMETER_VALUE_LENGTH} characters",
            )
    return ParameterRange(name, "Categorical", values=tuple(values))


def split_categorical_values(text: str) -> list[str] | Issue:
    """Split ``a | "b|c" | d`` into its values. Quoted values are JSON strings."""
    values: list[str] = []
    rest = text.strip()
    if not rest:
        return values
    while True:
        if rest.startswith('"'):
            try:
                value, end = json.JSONDecoder().raw_decode(rest)
            except json.JSONDecodeError as error:
                return Issue(
                    f"invalid quoted value: {error.msg}",
                    r'close the quotes and escape a " inside them as \"',
                )
            after = rest[end:].lstrip()
            if after and not after.startswith("|"):
                return Issue(
                    f"text after the quoted value {json.dumps(value)}",
                    'separate values with "|"',
                )
        else:
            value, separator, remainder = rest.partition("|")
            value = value.strip()
            if not value:
                return Issue(
                    'empty categorical value between "|" separators',
                    'remove the extra "|", or write an empty value as ""',
                )
            after = separator + remainder
        values.append(value)
        if not after:
            return values
        rest = after[1:].strip()
        if not rest:
            return Issue('categorical range ends with "|"', 'remove the last "|"')


def check_range(text: str) -> Issue | None:
    """Check one ``[tuning.ranges]`` value."""
    parsed = parse_range("", text)
    return parsed if isinstance(parsed, Issue) else None


def check_range_name(name: str) -> Issue | None:
    return length_check(MAX_PARAMETER_NAME_LENGTH, "hyperparameter name")(name)


def check_tuning_job_name(name: str) -> Issue | None:
    """Check a HyperParameterTuningJobName: 1 to 32 letters, digits and hyphens."""
    if _TUNING_JOB_NAME.fullmatch(name) and len(name) <= MAX_TUNING_JOB_NAME_LENGTH:
        return None
    suggestion = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:MAX_TUNING_JOB_NAME_LENGTH]
    return Issue(
        f'invalid tuning job name "{name}": SageMaker allows 1 to '
        f"{MAX_TUNING_JOB_NAME_LENGTH} letters, digits and hyphens, starting and ending "
        "with a letter or digit",
        f'use a name such as "{suggestion.rstrip("-") or "ltr-tuning"}"',
    )


def parse_parent_jobs(value: str) -> list[str]:
    return [name.strip() for name in value.split(",")]


def check_parent_jobs(value: str, context: CheckContext) -> Issue | None:
    """Check warm_start_parents: 1 to 5 comma-separated tuning job names, each once."""
    names = parse_parent_jobs(value)
    if "" in names:
        return Issue("empty tuning job name in the list", "list names separated by single commas")
    if len(names) > MAX_PARENT_TUNING_JOBS:
        return Issue(
            f"{len(names)} parent tuning jobs, SageMaker accepts 1 to {MAX_PARENT_TUNING_JOBS}",
            f"keep at most {MAX_PARENT_TUNING_JOBS} of them",
        )
    for name in names:
        issue = check_tuning_job_name(name)
        if issue is not None:
            return issue
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        return Issue(f"tuning job listed twice: {', '.join(repeated)}", "list each job once")
    return None

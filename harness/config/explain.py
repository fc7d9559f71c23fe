"""Value rules of ``[explain]`` and ``[explain.arguments]``, the settings of Clarify's SHAPConfig.

``[explain.arguments]`` is a free-key section like every ``[<step>.arguments]``, and
`harness check` compares its names with the script's ``--help``. The values here are checked
before any job starts, with the same limits that steps/explain/explain.py applies when it
parses them, so that a mistake costs no pipeline run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from harness.config.checks import CheckContext, Choice, Custom, Integer, Issue, ValueType
from harness.config.model import Problem
from harness.config.sources import LayeredSources

SECTION = "explain"
ARGUMENTS_SECTION = "explain.arguments"

# The largest value of a signed 32-bit integer, the bound of counts that have no limit of their own.
_MAX_COUNT = 2**31 - 1
# np.random.seed, which Kernel SHAP's sampling uses, takes seeds from 0 to 2^32 - 1.
_MAX_SEED = 2**32 - 1

BASELINE_METHODS = ("kmeans", "mean")
# SageMaker puts a processing job's inputs under this folder, and a job finds no other files.
CONTAINER_INPUT_ROOT = "/opt/ml/processing/input/"
# The spellings that explain.py's --save-local-shap-values accepts, in any case.
_TRUE_WORDS = ("true", "yes", "1")
_FALSE_WORDS = ("false", "no", "0")


def _check_baseline(value: str, context: CheckContext) -> Issue | None:
    if value in BASELINE_METHODS or value.startswith(CONTAINER_INPUT_ROOT):
        return None
    # NOTE: the plan ships no file of the user's own to the job, so a baseline file can only
    # be one of the job's inputs, such as the test split under /opt/ml/processing/input/test.
    return Issue(
        "not a baseline method or a container path of an input",
        "use kmeans (k-means centres of the test rows, as Clarify uses without a baseline) or "
        "mean (one row of feature means), or a CSV or Parquet file under "
        f"{CONTAINER_INPUT_ROOT}, such as {CONTAINER_INPUT_ROOT}test for the test split's rows",
    )


def _check_true_or_false(value: str, context: CheckContext) -> Issue | None:
    if value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
        return None
    return Issue("not true or false", "use true or false")


_NAME_LIST = re.compile(r"[^,\s]+(\s*,\s*[^,\s]+)*")


def _check_feature_list(value: str, context: CheckContext) -> Issue | None:
    if not _NAME_LIST.fullmatch(value.strip()):
        return Issue(
            "not a comma-separated list of feature names or indices",
            'list names from schema.json or zero-based indices, e.g. "f1, f8, 133"',
        )
    items = [item.strip() for item in value.split(",")]
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        return Issue(f"feature listed twice: {', '.join(repeated)}", "list each feature once")
    return None


# Each argument of explain.py with the values that its parser and check_arguments accept.
ARGUMENT_TYPES: Mapping[str, ValueType] = {
    "baseline": Custom(_check_baseline),
    "num-clusters": Integer(1, _MAX_COUNT, "clusters"),
    "num-samples": Integer(1, _MAX_COUNT, "coalitions"),
    "agg-method": Choice(("mean_abs", "median", "mean_sq")),
    "save-local-shap-values": Custom(_check_true_or_false),
    "seed": Integer(0, _MAX_SEED),
    "features-to-explain": Custom(_check_feature_list),
    "max-queries": Integer(1, _MAX_COUNT, "queries"),
    "pdp-grid-resolution": Integer(2, _MAX_COUNT, "buckets"),
    "pdp-top-k-features": Integer(0, _MAX_COUNT, "features"),
}


def check_explain(layered: LayeredSources, context: CheckContext) -> Iterator[Problem]:
    """Yield the problems of ``[explain.arguments]`` values and of ``[explain] instance_count``.

    Names that ARGUMENT_TYPES does not list are left to `harness check`, which reads the
    names that the script accepts from its ``--help``.
    """
    for key, raw in layered.values.get(ARGUMENTS_SECTION, {}).items():
        value_type = ARGUMENT_TYPES.get(key)
        if value_type is None:
            continue
        issue = value_type.check(raw.value, context)
        if issue is not None:
            yield Problem.at(
                raw.origin, ARGUMENTS_SECTION, key, raw.value, issue.message, issue.fix
            )

    count = layered.values.get(SECTION, {}).get("instance_count")
    if count is not None and re.fullmatch(r"\+?\d+", count.value) and int(count.value) > 1:
        yield Problem.at(
            count.origin,
            SECTION,
            "instance_count",
            count.value,
            "explain runs on one instance: it does not split its sample, so every instance "
            "would explain the same rows and write the same outputs",
            "set instance_count = 1",
        )

"""The condition step: a JsonGet on a property file, compared with a threshold.

This mirrors a SageMaker ConditionStep whose condition reads the evaluation report with
`JsonGet(step_name, property_file, json_path)`.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

COMPARISONS = {
    "GreaterThanOrEqualTo": lambda left, right: left >= right,
    "GreaterThan": lambda left, right: left > right,
    "LessThanOrEqualTo": lambda left, right: left <= right,
    "LessThan": lambda left, right: left < right,
    "Equals": lambda left, right: left == right,
}

SYMBOLS = {
    "GreaterThanOrEqualTo": ">=",
    "GreaterThan": ">",
    "LessThanOrEqualTo": "<=",
    "LessThan": "<",
    "Equals": "==",
}


class JsonPathError(LookupError):
    """The path does not lead to a value in the document."""


def json_get(document: Any, path: str) -> Any:
    """Return the value at a dotted path with optional `[N]` indexes, as JsonGet reads it."""
    value = document
    walked = ""
    for match in _TOKEN.finditer(path):
        key, index = match.group(1), match.group(2)
        if key is not None:
            if not isinstance(value, dict) or key not in value:
                available = ", ".join(sorted(value)) if isinstance(value, dict) else "none"
                raise JsonPathError(f"{walked or '$'} has no key {key!r} (keys there: {available})")
            value = value[key]
            walked = f"{walked}.{key}" if walked else key
        else:
            position = int(index)
            if not isinstance(value, list) or position >= len(value):
                raise JsonPathError(f"{walked or '$'} has no item [{position}]")
            value = value[position]
            walked = f"{walked}[{position}]"
    return value


def evaluate_condition(comparison: str, left: float, right: float) -> bool:
    return bool(COMPARISONS[comparison](left, right))

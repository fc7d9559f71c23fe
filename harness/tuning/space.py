"""Map tuning ranges onto Optuna distributions, and sampled values onto hyperparameter strings.

Scaling types follow SageMaker's ScalingType:

- ``Linear``: uniform between MinValue and MaxValue.
- ``Logarithmic``: log-uniform, so each order of magnitude is searched equally.
- ``ReverseLogarithmic`` (continuous only, 0 <= x < 1): ``1 - x`` is sampled log-uniformly,
  so values close to 1 are searched as finely as Logarithmic searches values close to 0. The
  Optuna parameter then contains ``1 - x``, and to_hyperparameter() turns it back into ``x``.
- ``Auto``: SageMaker chooses a scale itself. Here it is Linear.

Trial values reach the training job as strings, as SageMaker passes every hyperparameter.
"""

from __future__ import annotations

from collections.abc import Sequence

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from harness.config import ParameterRange


def distribution(parameter_range: ParameterRange) -> BaseDistribution:
    """Return the Optuna distribution that samples ``parameter_range``."""
    if parameter_range.kind == "Categorical":
        return CategoricalDistribution(parameter_range.values)

    scaling = parameter_range.scaling_type
    if parameter_range.kind == "Integer":
        low, high = int(str(parameter_range.min_value)), int(str(parameter_range.max_value))
        return IntDistribution(low, high, log=scaling == "Logarithmic")

    low, high = float(str(parameter_range.min_value)), float(str(parameter_range.max_value))
    if scaling == "ReverseLogarithmic":
        return FloatDistribution(1.0 - high, 1.0 - low, log=True)
    return FloatDistribution(low, high, log=scaling == "Logarithmic")


def search_space(ranges: Sequence[ParameterRange]) -> dict[str, BaseDistribution]:
    """Return each tuned hyperparameter's distribution, by name."""
    return {parameter_range.name: distribution(parameter_range) for parameter_range in ranges}


def grid_search_space(ranges: Sequence[ParameterRange]) -> dict[str, list[str]]:
    """Return the GridSampler search space. Configuration checks allow only categorical ranges."""
    return {parameter_range.name: list(parameter_range.values) for parameter_range in ranges}


def to_hyperparameter(parameter_range: ParameterRange, value: object) -> str:
    """Return the hyperparameter string for an Optuna parameter value."""
    if parameter_range.kind == "Categorical":
        return str(value)
    if parameter_range.kind == "Integer":
        return str(int(str(value)))

    number = float(str(value))
    if parameter_range.scaling_type == "ReverseLogarithmic":
        number = 1.0 - number
    # 1 - (1 - x) can differ from x in the last bit, which could leave the range.
    low, high = float(str(parameter_range.min_value)), float(str(parameter_range.max_value))
    return repr(min(max(number, low), high))


def from_hyperparameter(parameter_range: ParameterRange, text: str) -> object | None:
    """Return the Optuna parameter value for a hyperparameter string, or None outside the range.

    Warm start uses it to place a parent tuning job's training jobs in this search space.
    """
    if parameter_range.kind == "Categorical":
        return text if text in parameter_range.values else None

    space = distribution(parameter_range)
    try:
        number: float = int(text) if parameter_range.kind == "Integer" else float(text)
    except ValueError:
        return None
    if parameter_range.scaling_type == "ReverseLogarithmic":
        number = 1.0 - number
    assert isinstance(space, IntDistribution | FloatDistribution)
    if not space.low <= number <= space.high:
        return None
    return number

"""Ranges mapped onto Optuna distributions, and sampled values onto hyperparameter strings."""

from __future__ import annotations

import statistics

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from harness.config import ParameterRange
from harness.tuning.space import distribution, from_hyperparameter, to_hyperparameter


def sample(parameter_range: ParameterRange, count: int, seed: int = 3) -> list[str]:
    """Sample ``count`` hyperparameter strings with a seeded RandomSampler."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    space = {parameter_range.name: distribution(parameter_range)}
    values = []
    for _ in range(count):
        trial = study.ask(space)
        values.append(to_hyperparameter(parameter_range, trial.params[parameter_range.name]))
        study.tell(trial, 0.0)
    return values


@pytest.mark.parametrize(
    ("parameter_range", "expected"),
    [
        (
            ParameterRange("lr", "Continuous", "0.001", "0.1", "Linear"),
            FloatDistribution(0.001, 0.1),
        ),
        (
            ParameterRange("lr", "Continuous", "0.001", "0.1", "Auto"),
            FloatDistribution(0.001, 0.1),
        ),
        (
            ParameterRange("lr", "Continuous", "0.001", "0.1", "Logarithmic"),
            FloatDistribution(0.001, 0.1, log=True),
        ),
        (
            ParameterRange("momentum", "Continuous", "0.5", "0.999", "ReverseLogarithmic"),
            FloatDistribution(1 - 0.999, 0.5, log=True),
        ),
        (ParameterRange("units", "Integer", "16", "256", "Auto"), IntDistribution(16, 256)),
        (
            ParameterRange("units", "Integer", "16", "256", "Logarithmic"),
            IntDistribution(16, 256, log=True),
        ),
        (
            ParameterRange("loss", "Categorical", values=("softmax", "pairwise_logistic")),
            CategoricalDistribution(("softmax", "pairwise_logistic")),
        ),
    ],
)
def test_distribution_per_scaling_type(parameter_range: ParameterRange, expected) -> None:
    assert distribution(parameter_range) == expected


def test_reverse_logarithmic_searches_close_to_one() -> None:
    parameter_range = ParameterRange("momentum", "Continuous", "0", "0.999", "ReverseLogarithmic")

    values = [float(text) for text in sample(parameter_range, 200)]

    assert all(0 <= value <= 0.999 for value in values)
    # 1 - x is log-uniform on [0.001, 1], whose median is 10 ** -1.5, about 0.03.
    assert 0.9 < statistics.median(values) < 0.99


def test_logarithmic_searches_each_magnitude() -> None:
    parameter_range = ParameterRange("lr", "Continuous", "0.0001", "1", "Logarithmic")

    values = [float(text) for text in sample(parameter_range, 200)]

    assert all(0.0001 <= value <= 1 for value in values)
    assert 0.003 < statistics.median(values) < 0.03


def test_integer_values_are_integer_strings() -> None:
    parameter_range = ParameterRange("units", "Integer", "16", "256", "Logarithmic")

    values = sample(parameter_range, 50)

    assert all(text.isdigit() and 16 <= int(text) <= 256 for text in values)


def test_categorical_values_kept_verbatim() -> None:
    parameter_range = ParameterRange("hidden_units", "Categorical", values=("128,64", "64,32"))

    assert set(sample(parameter_range, 20)) == {"128,64", "64,32"}


def test_from_hyperparameter_round_trip() -> None:
    momentum = ParameterRange("momentum", "Continuous", "0.5", "0.99", "ReverseLogarithmic")
    units = ParameterRange("units", "Integer", "16", "256", "Linear")
    loss = ParameterRange("loss", "Categorical", values=("softmax",))

    assert to_hyperparameter(momentum, from_hyperparameter(momentum, "0.9")) == "0.9"
    assert from_hyperparameter(momentum, "0.995") is None
    assert from_hyperparameter(units, "32") == 32
    assert from_hyperparameter(units, "8") is None
    assert from_hyperparameter(units, "3.5") is None
    assert from_hyperparameter(loss, "softmax") == "softmax"
    assert from_hyperparameter(loss, "hinge") is None

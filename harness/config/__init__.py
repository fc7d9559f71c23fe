"""Layered, validated configuration for harness.

``load_config()`` reads config.ini, config.local.ini, ``-c`` files and ``--set`` overrides,
checks them against the schema in ``harness.config.schema`` and raises ConfigError with
every problem found.
"""

from __future__ import annotations

from harness.config.loader import load_config, validate_dataset
from harness.config.model import (
    ConditionConfig,
    Config,
    Origin,
    ParameterRange,
    PipelineConfig,
    Problem,
    RegisterConfig,
    SessionConfig,
    StepConfig,
    TuningConfig,
)
from harness.config.show import render_config
from harness.errors import ConfigError

__all__ = [
    "ConditionConfig",
    "Config",
    "ConfigError",
    "Origin",
    "ParameterRange",
    "PipelineConfig",
    "Problem",
    "RegisterConfig",
    "SessionConfig",
    "StepConfig",
    "TuningConfig",
    "load_config",
    "render_config",
    "validate_dataset",
]

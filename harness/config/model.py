"""Typed configuration objects and the Problem record that validation reports."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Origin.file of a value that no source set.
DEFAULT_ORIGIN_FILE = "default"

# Problem values longer than this are shortened in messages.
_MAX_SHOWN_VALUE_LENGTH = 120


@dataclass(frozen=True)
class Origin:
    """Source of a value: a file and line, ``--set #N`` (line None), or ``default``."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}"


DEFAULT_ORIGIN = Origin(DEFAULT_ORIGIN_FILE)


@dataclass(frozen=True)
class Problem:
    """One configuration problem: where it is, the value, what is wrong and how to fix it.

    ``file`` is a path as the user gave it, ``--set #N`` or None. ``section``, ``key`` and
    ``value`` are None where the problem is not about one of them (a syntax error, a missing
    file). ``message`` and ``fix`` are sentences without the final period.
    """

    file: str | None
    line: int | None
    section: str | None
    key: str | None
    value: str | None
    message: str
    fix: str

    @classmethod
    def at(
        cls,
        origin: Origin | None,
        section: str | None,
        key: str | None,
        value: str | None,
        message: str,
        fix: str,
    ) -> Problem:
        """Build a problem located at ``origin``."""
        if origin is None:
            return cls(None, None, section, key, value, message, fix)
        return cls(origin.file, origin.line, section, key, value, message, fix)

    def __str__(self) -> str:
        parts: list[str] = []
        if self.file is not None:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.section is not None:
            parts.append(f"[{self.section}]")
        if self.key is not None:
            parts.append(self.key)
        if self.value is not None:
            quoted = _quote(self.value)
            parts.append(f"= {quoted}" if self.key is not None else quoted)
        location = " ".join(parts)
        text = f"{location}: {self.message}" if location else self.message
        return f"{_end_sentence(text)} Fix: {_end_sentence(self.fix)}"


def _quote(value: str) -> str:
    if len(value) > _MAX_SHOWN_VALUE_LENGTH:
        shortened = value[: _MAX_SHOWN_VALUE_LENGTH - 20]
        return f'{json.dumps(shortened)[:-1]}..." ({len(value)} characters)'
    return json.dumps(value)


def _end_sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else f"{text}."


@dataclass(frozen=True)
class PipelineConfig:
    """The ``[pipeline]`` section. ``steps`` is in pipeline graph order."""

    name: str
    steps: tuple[str, ...]
    dataset: str
    output_prefix: str
    workspace: str


@dataclass(frozen=True)
class SessionConfig:
    """The ``[session]`` section: where the pipeline runs and as which IAM role."""

    target: str
    region: str
    role_arn: str
    bucket: str


@dataclass(frozen=True)
class StepConfig:
    """A job step's section with its sub-sections.

    ``arguments`` become ``--key value`` container arguments of a processing job and are
    empty for train. ``hyperparameters``, ``metric_definitions``, ``framework_version`` and
    ``py_version`` are set only for train (empty or None for processing steps).
    ``processes_per_host`` and ``custom_mpi_options`` describe MPI distribution (train only):
    the job runs data-parallel when ``instance_count * processes_per_host`` is above 1.
    """

    name: str
    entry_point: str
    instance_type: str
    instance_count: int
    max_runtime_seconds: int
    volume_size_gb: int
    arguments: dict[str, str]
    hyperparameters: dict[str, str]
    metric_definitions: tuple[dict[str, str], ...]
    environment: dict[str, str]
    framework_version: str | None
    py_version: str | None
    processes_per_host: int = 1
    custom_mpi_options: str = ""

    @property
    def ranks(self) -> int:
        """Return the number of training processes in all: instances times processes per host."""
        return self.instance_count * self.processes_per_host


@dataclass(frozen=True)
class ConditionConfig:
    """The ``[condition]`` section: the quality gate in front of register."""

    metric: str
    json_path: str
    comparison: str
    threshold: float


@dataclass(frozen=True)
class RegisterConfig:
    """The ``[register]`` section: the model package group to register the model in."""

    model_package_group: str
    content_type: str
    inference_instance_type: str


@dataclass(frozen=True)
class ParameterRange:
    """One hyperparameter range of ``[tuning.ranges]``, as CreateHyperParameterTuningJob takes it.

    ``kind`` is ``Integer``, ``Continuous`` or ``Categorical``. Integer and continuous ranges
    set ``min_value``, ``max_value`` (as written, so the request keeps the user's text) and
    ``scaling_type``. Categorical ranges set only ``values``.
    """

    name: str
    kind: str
    min_value: str | None = None
    max_value: str | None = None
    scaling_type: str | None = None
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class TuningConfig:
    """The ``[tuning]`` and ``[tuning.ranges]`` sections: a hyperparameter tuning job of train.

    ``max_jobs`` is the number of combinations for the Grid strategy when the file leaves it
    out. ``min_resource`` and ``max_resource`` (epochs) are set only for Hyperband, and
    ``max_resource`` is then inferred from an epochs hyperparameter when the file leaves it out.
    ``random_seed`` is None when not set.
    """

    strategy: str
    objective_metric: str
    objective_type: str
    max_jobs: int
    max_parallel_jobs: int
    ranges: tuple[ParameterRange, ...]
    early_stopping: str = "Off"
    random_seed: int | None = None
    min_resource: int | None = None
    max_resource: int | None = None
    target_objective_value: float | None = None
    max_jobs_not_improving: int | None = None
    warm_start_parents: tuple[str, ...] = ()
    warm_start_type: str | None = None

    @property
    def tuned_names(self) -> tuple[str, ...]:
        """Return the names of the tuned hyperparameters, in the order of the file."""
        return tuple(parameter_range.name for parameter_range in self.ranges)


# section -> key -> (value, origin)
EffectiveValues = Mapping[str, Mapping[str, tuple[str, Origin]]]


@dataclass(frozen=True)
class Config:
    """A validated configuration.

    ``steps`` contains the job steps selected in ``pipeline.steps``. ``condition`` and
    ``register`` are None unless selected, and ``tuning`` is None unless the files have a
    ``[tuning]`` section. ``sources`` lists what was read, in layering order: each file as
    the user gave it, then ``--set #1``, ``--set #2`` and so on.
    """

    project_root: Path
    sources: tuple[str, ...]
    pipeline: PipelineConfig
    session: SessionConfig
    steps: dict[str, StepConfig]
    condition: ConditionConfig | None
    register: RegisterConfig | None
    tuning: TuningConfig | None = None
    values: EffectiveValues = field(default_factory=dict, repr=False)

    def effective(self) -> dict[str, dict[str, tuple[str, Origin]]]:
        """Return every section and key with its final value and origin.

        Defaults are included with the origin ``default``. The result is a copy.
        """
        return {section: dict(keys) for section, keys in self.values.items()}

    def section_values(self, section: str) -> dict[str, str]:
        """Return a section's final values as strings, defaults included; {} if absent."""
        keys = self.values.get(section, {})
        return {key: value for key, (value, _origin) in keys.items()}

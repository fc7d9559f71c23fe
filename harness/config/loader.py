"""Load the layered configuration into a validated Config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.config.checks import CheckContext
from harness.config.graph import JOB_KINDS
from harness.config.model import (
    DEFAULT_ORIGIN,
    ConditionConfig,
    Config,
    Origin,
    PipelineConfig,
    Problem,
    RegisterConfig,
    SessionConfig,
    StepConfig,
)
from harness.config.schema import SECTIONS, SectionSpec, StepList
from harness.config.sources import LayeredSources, layer_sources
from harness.config.tuning import build_tuning
from harness.config.validate import validate
from harness.errors import ConfigError

Values = Mapping[str, Mapping[str, tuple[str, Origin]]]


def load_config(
    path: Path = Path("config.ini"),
    extra_files: Sequence[Path] = (),
    overrides: Sequence[str] = (),
    *,
    use_local: bool = True,
) -> Config:
    """Read, layer and validate the configuration.

    Sources are applied in this order, and the last source wins key by key:

    1. the base file ``path``;
    2. ``config.local.ini`` beside it, when it exists and ``use_local`` is true;
    3. each file in ``extra_files`` (``-c FILE``), in the order given;
    4. each override (``--set section.key=value``), in the order given.

    A file that sets only ``[train.hyperparameters] epochs`` keeps every other key of the
    earlier sources. An override splits at its first "=", and the name before it splits at
    its last "." into section and key, so ``train.metrics.validation:ndcg@10=...`` sets the
    key ``validation:ndcg@10`` of ``[train.metrics]``. The project root is the base file's
    folder, and entry points and the dataset are relative to it.

    Values keep their text as written: a "#" or ";" after a value is part of the value,
    because comments must be on lines of their own.

    The existence of a local dataset folder is not checked here, see validate_dataset().

    Raises:
        ConfigError: listing every problem found, each with its file, line, section, key,
            value and fix.
    """
    # A str is a sequence of one-character strings, which would read as many sources.
    if isinstance(extra_files, str | bytes) or isinstance(overrides, str | bytes):
        raise TypeError("extra_files and overrides take a sequence of items, not one string")
    path = Path(path)
    project_root = path.parent.resolve()
    layered = layer_sources(path, extra_files, overrides, use_local)
    problems = validate(layered, CheckContext(project_root))
    if problems:
        raise ConfigError(problems)
    return _build_config(project_root, layered)


def validate_dataset(config: Config) -> list[Problem]:
    """Return problems with a local dataset folder: missing, not a folder or empty.

    load_config() checks only the form of pipeline.dataset, so that ``harness config show``
    works before the data is fetched. Run this before starting any job. An ``s3://`` dataset
    is not checked, and nothing is checked when prepare, which reads the dataset, is not
    selected.
    """
    dataset = config.pipeline.dataset
    if "prepare" not in config.pipeline.steps or dataset.startswith("s3://"):
        return []

    value, origin = config.values["pipeline"]["dataset"]
    folder = config.project_root / dataset
    fix = (
        "put the LETOR text files in that folder, or set [pipeline] dataset to an existing "
        "folder or an s3:// URI"
    )
    if not folder.exists():
        message = f"dataset folder not found: {folder}"
    elif not folder.is_dir():
        message = f"dataset is not a folder: {folder}"
    elif not any(folder.iterdir()):
        message = f"dataset folder is empty: {folder}"
    else:
        return []
    return [Problem.at(origin, "pipeline", "dataset", value, message, fix)]


def _build_config(project_root: Path, layered: LayeredSources) -> Config:
    values = _effective_values(layered)
    pipeline = values["pipeline"]
    steps = StepList().convert(_text(pipeline, "steps"))

    job_steps = {step: _build_step(values, step) for step in steps if step in JOB_KINDS}
    condition = None
    if "condition" in steps:
        section = values["condition"]
        condition = ConditionConfig(
            metric=_text(section, "metric"),
            json_path=_text(section, "json_path"),
            comparison=_text(section, "comparison"),
            threshold=float(_text(section, "threshold")),
        )
    register = None
    if "register" in steps:
        section = values["register"]
        register = RegisterConfig(
            model_package_group=_text(section, "model_package_group"),
            content_type=_text(section, "content_type"),
            inference_instance_type=_text(section, "inference_instance_type"),
        )

    tuning = None
    if "tuning" in values and "train" in job_steps:
        tuning = build_tuning(
            values["tuning"], values.get("tuning.ranges", {}), job_steps["train"].hyperparameters
        )

    session = values["session"]
    return Config(
        project_root=project_root,
        sources=tuple(layered.sources),
        pipeline=PipelineConfig(
            name=_text(pipeline, "name"),
            steps=steps,
            dataset=_text(pipeline, "dataset"),
            output_prefix=_text(pipeline, "output_prefix"),
            workspace=_text(pipeline, "workspace"),
        ),
        session=SessionConfig(
            target=_text(session, "target"),
            region=_text(session, "region"),
            role_arn=_text(session, "role_arn"),
            bucket=_text(session, "bucket"),
        ),
        steps=job_steps,
        condition=condition,
        register=register,
        tuning=tuning,
        values=values,
    )


def _build_step(values: Values, step: str) -> StepConfig:
    section = values[step]
    is_training = JOB_KINDS[step] == "training"

    def strings(subsection: str) -> dict[str, str]:
        return {key: value for key, (value, _) in values.get(f"{step}.{subsection}", {}).items()}

    metrics = strings("metrics") if is_training else {}
    return StepConfig(
        name=step,
        entry_point=_text(section, "entry_point"),
        instance_type=_text(section, "instance_type"),
        instance_count=int(_text(section, "instance_count")),
        max_runtime_seconds=int(_text(section, "max_runtime_seconds")),
        volume_size_gb=int(_text(section, "volume_size_gb")),
        arguments={} if is_training else strings("arguments"),
        hyperparameters=strings("hyperparameters") if is_training else {},
        metric_definitions=tuple({"Name": name, "Regex": regex} for name, regex in metrics.items()),
        environment=strings("environment"),
        framework_version=_text(section, "framework_version") if is_training else None,
        py_version=_text(section, "py_version") if is_training else None,
        processes_per_host=int(_text(section, "processes_per_host")) if is_training else 1,
        custom_mpi_options=section["custom_mpi_options"][0]
        if is_training and "custom_mpi_options" in section
        else "",
    )


def _text(section: Mapping[str, tuple[str, Origin]], key: str) -> str:
    return section[key][0]


def _effective_values(layered: LayeredSources) -> dict[str, dict[str, tuple[str, Origin]]]:
    """Return the final values with defaults, sections in schema order.

    Fixed sections list their keys in schema order and free-key sections in source order.
    Defaults fill every fixed section that is present or always required.
    """
    values: dict[str, dict[str, tuple[str, Origin]]] = {}
    for name, spec in SECTIONS.items():
        raw_keys = layered.values.get(name)
        if raw_keys is None and not (isinstance(spec, SectionSpec) and spec.step is None):
            continue
        raw_keys = raw_keys or {}
        section: dict[str, tuple[str, Origin]] = {}
        if isinstance(spec, SectionSpec):
            for key, key_spec in spec.keys.items():
                if key in raw_keys:
                    section[key] = (raw_keys[key].value, raw_keys[key].origin)
                elif key_spec.default is not None:
                    section[key] = (key_spec.default, DEFAULT_ORIGIN)
        else:
            section = {key: (raw.value, raw.origin) for key, raw in raw_keys.items()}
        values[name] = section
    return values

"""Rules across ``[tuning]``, ``[tuning.ranges]`` and ``[train.*]``, and the TuningConfig.

Each key's own checks run first (harness.config.validate). The rules here look only at values
that passed them, so that one mistake is reported once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from harness.config.checks import CheckContext, Issue, did_you_mean
from harness.config.model import Origin, ParameterRange, Problem, TuningConfig
from harness.config.ranges import MAX_HYPERBAND_RESOURCE, parse_parent_jobs, parse_range
from harness.config.schema import TUNING_SECTION
from harness.config.sources import LayeredSources, RawValue

# Static hyperparameters from which SageMaker infers Hyperband's MaxResource when it is not
# set, in the order that HyperbandStrategyConfig's documentation lists them.
EPOCHS_HYPERPARAMETERS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")

_RANGES = "tuning.ranges"


@dataclass(frozen=True)
class _Setting:
    """A [tuning] key's raw value and origin, with its converted value when it is valid."""

    raw: RawValue
    value: object


def check_tuning(
    layered: LayeredSources, steps: tuple[str, ...] | None, context: CheckContext
) -> Iterator[Problem]:
    """Yield the problems of a tuning job definition that no single key shows."""
    if "tuning" not in layered.values:
        if _RANGES in layered.values:
            yield Problem.at(
                layered.section_origins[_RANGES][0],
                "tuning",
                None,
                None,
                "missing section: [tuning.ranges] needs a [tuning] section",
                'add [tuning] with "objective_metric = validation:ndcg@10" and '
                '"objective_type = Maximize", or remove [tuning.ranges]',
            )
        return

    header = layered.section_origins["tuning"][0]
    if steps is not None and "train" not in steps:
        yield Problem.at(
            header,
            "tuning",
            None,
            None,
            "tuning runs training jobs of the train step, which is not selected",
            "add train to [pipeline] steps, or remove [tuning] and [tuning.ranges]",
        )
        return

    settings = _valid_settings(layered.values["tuning"], context)
    ranges = _valid_ranges(layered.values.get(_RANGES, {}))
    hyperparameters = layered.values.get("train.hyperparameters", {})

    if not layered.values.get(_RANGES):
        origins = layered.section_origins.get(_RANGES) or [header]
        yield Problem.at(
            origins[0],
            _RANGES,
            None,
            None,
            "no hyperparameter ranges to tune",
            "add a [tuning.ranges] section, e.g. "
            '"learning_rate = continuous 0.0001..0.01 Logarithmic"',
        )
    yield from _check_tuned_names(layered.values.get(_RANGES, {}), hyperparameters)
    yield from _check_objective(settings, layered.values.get("train.metrics", {}))
    yield from _check_strategy(layered, header, settings, ranges)
    yield from _check_hyperband(header, layered.values["tuning"], settings, hyperparameters, ranges)
    yield from _check_warm_start(layered.values["tuning"], settings)


def _valid_settings(keys: Mapping[str, RawValue], context: CheckContext) -> dict[str, _Setting]:
    settings: dict[str, _Setting] = {}
    for key, raw in keys.items():
        key_spec = TUNING_SECTION.keys.get(key)
        if key_spec is None or not raw.value:
            continue
        if key_spec.type.check(raw.value, context) is None:
            settings[key] = _Setting(raw, key_spec.type.convert(raw.value))
    return settings


def _valid_ranges(keys: Mapping[str, RawValue]) -> dict[str, tuple[ParameterRange, RawValue]]:
    ranges = {}
    for name, raw in keys.items():
        parsed = parse_range(name, raw.value)
        if not isinstance(parsed, Issue):
            ranges[name] = (parsed, raw)
    return ranges


def _setting_value(settings: Mapping[str, _Setting], key: str) -> object:
    """Return a valid setting's value, the schema default, or None."""
    if key in settings:
        return settings[key].value
    default = TUNING_SECTION.keys[key].default
    return None if default is None else TUNING_SECTION.keys[key].type.convert(default)


def _strategy(raw_keys: Mapping[str, RawValue], settings: Mapping[str, _Setting]) -> str | None:
    """Return the strategy, or None when its value is invalid (its own check reports it)."""
    if "strategy" in raw_keys and "strategy" not in settings:
        return None
    return str(_setting_value(settings, "strategy"))


def _at(setting: _Setting, key: str, message: str, fix: str) -> Problem:
    return Problem.at(setting.raw.origin, "tuning", key, setting.raw.value, message, fix)


def _check_tuned_names(
    ranges: Mapping[str, RawValue], hyperparameters: Mapping[str, RawValue]
) -> Iterator[Problem]:
    # NOTE: this checks names against [train.hyperparameters] only. `harness check` runs the
    # train script's --help and checks every key of [train.hyperparameters] against it, which
    # covers tuned names too.
    for name, raw in ranges.items():
        if name in hyperparameters:
            continue
        guess = did_you_mean(name, list(hyperparameters))
        fix = (
            f'rename it to "{guess}"'
            if guess
            else f'add "{name} = <value outside tuning>" to [train.hyperparameters]'
        )
        yield Problem.at(
            raw.origin,
            _RANGES,
            name,
            raw.value,
            f'tuned hyperparameter "{name}" is not in [train.hyperparameters]',
            fix,
        )


def _check_objective(
    settings: Mapping[str, _Setting], metrics: Mapping[str, RawValue]
) -> Iterator[Problem]:
    setting = settings.get("objective_metric")
    if setting is None or setting.value in metrics:
        return
    name = str(setting.value)
    guess = did_you_mean(name, list(metrics))
    if guess is not None:
        fix = f'use "{guess}"'
    elif metrics:
        fix = f"use one of: {', '.join(metrics)}, or define it in [train.metrics]"
    else:
        fix = f'define it in [train.metrics], e.g. "{name} = {name}=([0-9.eE+-]+)"'
    yield _at(
        setting,
        "objective_metric",
        f'no metric definition named "{name}" in [train.metrics], so the tuning job cannot '
        "read the objective metric from the training job's log",
        fix,
    )


def grid_size(ranges: list[ParameterRange]) -> int:
    """Return the number of combinations of categorical values: Grid's number of jobs."""
    return math.prod(len(parameter_range.values) for parameter_range in ranges)


def _check_strategy(
    layered: LayeredSources,
    header: Origin,
    settings: Mapping[str, _Setting],
    ranges: Mapping[str, tuple[ParameterRange, RawValue]],
) -> Iterator[Problem]:
    strategy = _strategy(layered.values["tuning"], settings)
    if strategy is None:
        return
    max_jobs = settings.get("max_jobs")
    effective_max_jobs: object = max_jobs.value if max_jobs else None
    if strategy == "Grid":
        numeric = [(parsed, raw) for parsed, raw in ranges.values() if parsed.kind != "Categorical"]
        for parsed, raw in numeric:
            yield Problem.at(
                raw.origin,
                _RANGES,
                parsed.name,
                raw.value,
                "the Grid strategy searches only categorical ranges",
                f'list the values to try, e.g. "{parsed.name} = categorical '
                f'{parsed.min_value} | {parsed.max_value}", or use strategy Random or Bayesian',
            )
        all_valid = len(ranges) == len(layered.values.get(_RANGES, {}))
        if not numeric and all_valid and ranges:
            combinations = grid_size([parsed for parsed, _ in ranges.values()])
            if max_jobs is not None and max_jobs.value != combinations:
                yield _at(
                    max_jobs,
                    "max_jobs",
                    f"the grid has {combinations} combinations of categorical values, and "
                    "the Grid strategy runs one training job for each",
                    f"set max_jobs = {combinations}, or remove max_jobs",
                )
            effective_max_jobs = combinations
    elif max_jobs is None and "max_jobs" not in layered.values["tuning"]:
        yield Problem.at(
            header,
            "tuning",
            "max_jobs",
            None,
            f"missing required key: the {strategy} strategy needs a maximum number of "
            "training jobs",
            'add "max_jobs = 20"',
        )

    parallel = settings.get("max_parallel_jobs")
    if (
        parallel is not None
        and isinstance(effective_max_jobs, int)
        and isinstance(parallel.value, int)
        and parallel.value > effective_max_jobs
    ):
        yield _at(
            parallel,
            "max_parallel_jobs",
            f"more parallel training jobs than the tuning job runs in all ({effective_max_jobs})",
            f"set max_parallel_jobs to at most {effective_max_jobs}",
        )


def infer_max_resource(
    hyperparameters: Mapping[str, str], tuned: set[str]
) -> tuple[str, str] | None:
    """Return the static epochs hyperparameter (name, value) that Hyperband reads, or None."""
    for name in EPOCHS_HYPERPARAMETERS:
        if name in hyperparameters and name not in tuned:
            return name, hyperparameters[name]
    return None


def _parse_resource(value: str) -> int | None:
    text = value.strip()
    if text.isdigit() and 1 <= int(text) <= MAX_HYPERBAND_RESOURCE:
        return int(text)
    return None


def _check_hyperband(
    header: Origin,
    raw_keys: Mapping[str, RawValue],
    settings: Mapping[str, _Setting],
    hyperparameters: Mapping[str, RawValue],
    ranges: Mapping[str, tuple[ParameterRange, RawValue]],
) -> Iterator[Problem]:
    strategy = _strategy(raw_keys, settings)
    if strategy is None:
        return
    if strategy != "Hyperband":
        for key in ("min_resource", "max_resource"):
            if key in settings:
                yield _at(
                    settings[key],
                    key,
                    f"{key} is used only by the Hyperband strategy",
                    "remove it, or set strategy = Hyperband",
                )
        return

    early_stopping = settings.get("early_stopping")
    if early_stopping is not None and early_stopping.value != "Off":
        yield _at(
            early_stopping,
            "early_stopping",
            "the Hyperband strategy stops training jobs itself, so SageMaker requires "
            "early_stopping = Off with it",
            "set early_stopping = Off, or use strategy Bayesian or Random",
        )

    if any(key in raw_keys and key not in settings for key in ("min_resource", "max_resource")):
        # An invalid resource value is reported by its own check.
        return
    if "max_resource" in settings:
        max_resource = int(str(settings["max_resource"].value))
    else:
        static = {name: raw.value for name, raw in hyperparameters.items()}
        inferred = infer_max_resource(static, set(ranges))
        if inferred is None:
            yield Problem.at(
                header,
                "tuning",
                "max_resource",
                None,
                "missing max_resource, and no static epochs hyperparameter in "
                "[train.hyperparameters] to infer it from",
                'add "max_resource = 30" (the most epochs a training job runs), or set '
                "epochs in [train.hyperparameters] without tuning it",
            )
            return
        name, value = inferred
        parsed_resource = _parse_resource(value)
        if parsed_resource is None:
            raw = hyperparameters[name]
            yield Problem.at(
                raw.origin,
                "train.hyperparameters",
                name,
                raw.value,
                f"Hyperband infers max_resource from {name}, which is not a whole number "
                f"from 1 to {MAX_HYPERBAND_RESOURCE}",
                f"set max_resource in [tuning], or correct {name}",
            )
            return
        max_resource = parsed_resource

    min_resource = settings.get("min_resource")
    if min_resource is not None and int(str(min_resource.value)) > max_resource:
        yield _at(
            min_resource,
            "min_resource",
            f"min_resource is greater than max_resource ({max_resource} epochs)",
            f"set min_resource to at most {max_resource}",
        )


def _check_warm_start(
    raw_keys: Mapping[str, RawValue], settings: Mapping[str, _Setting]
) -> Iterator[Problem]:
    parents = settings.get("warm_start_parents")
    warm_start_type = settings.get("warm_start_type")
    if parents is not None and "warm_start_type" not in raw_keys:
        yield _at(
            parents,
            "warm_start_parents",
            "missing warm_start_type",
            'add "warm_start_type = IdenticalDataAndAlgorithm" (or TransferLearning)',
        )
    if warm_start_type is not None and "warm_start_parents" not in raw_keys:
        yield _at(
            warm_start_type,
            "warm_start_type",
            "warm_start_type without warm_start_parents",
            "add warm_start_parents = <names of earlier tuning jobs>, or remove warm_start_type",
        )


def build_tuning(
    tuning: Mapping[str, tuple[str, Origin]],
    ranges: Mapping[str, tuple[str, Origin]],
    hyperparameters: Mapping[str, str],
) -> TuningConfig:
    """Build the TuningConfig from validated effective values (defaults filled in)."""

    def text(key: str) -> str | None:
        return tuning[key][0] if key in tuning else None

    def integer(key: str) -> int | None:
        value = text(key)
        return None if value is None else int(value)

    parsed = []
    for name, (value, _origin) in ranges.items():
        parameter_range = parse_range(name, value)
        assert not isinstance(parameter_range, Issue), "validated before"
        parsed.append(parameter_range)

    strategy = text("strategy") or "Bayesian"
    max_jobs = integer("max_jobs")
    if max_jobs is None:
        max_jobs = grid_size(parsed)
    min_resource = max_resource = None
    if strategy == "Hyperband":
        # NOTE: the API documents no default MinResource. 1 epoch lets Hyperband stop a job
        # after its first epoch, as Optuna's HyperbandPruner does by default.
        min_resource = integer("min_resource") or 1
        max_resource = integer("max_resource")
        if max_resource is None:
            inferred = infer_max_resource(hyperparameters, set(ranges))
            assert inferred is not None, "validated before"
            max_resource = int(inferred[1])

    target = text("target_objective_value")
    parents = text("warm_start_parents")
    return TuningConfig(
        strategy=strategy,
        objective_metric=text("objective_metric") or "",
        objective_type=text("objective_type") or "",
        max_jobs=max_jobs,
        max_parallel_jobs=integer("max_parallel_jobs") or 1,
        ranges=tuple(parsed),
        early_stopping=text("early_stopping") or "Off",
        random_seed=integer("random_seed"),
        min_resource=min_resource,
        max_resource=max_resource,
        target_objective_value=None if target is None else float(target),
        max_jobs_not_improving=integer("max_jobs_not_improving"),
        warm_start_parents=tuple(parse_parent_jobs(parents)) if parents else (),
        warm_start_type=text("warm_start_type"),
    )

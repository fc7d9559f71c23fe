"""Check layered configuration values against the schema and collect every problem."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

from harness.config.checks import CheckContext, did_you_mean
from harness.config.explain import check_explain
from harness.config.graph import JOB_KINDS, STEP_INPUTS
from harness.config.model import Origin, Problem
from harness.config.schema import SECTIONS, MapSectionSpec, SectionSpec, StepList
from harness.config.sources import LayeredSources, RawValue
from harness.config.tuning import check_tuning


def validate(layered: LayeredSources, context: CheckContext) -> list[Problem]:
    """Return every problem in ``layered``, sorted by source and line."""
    problems = list(layered.problems)
    for section, keys in layered.values.items():
        spec = SECTIONS.get(section)
        origins = layered.section_origins[section]
        if spec is None:
            problems.extend(_unknown_section(section, origins))
            # The keys of a misspelt section are checked as those of the section it resembles,
            # so that their mistakes show in the same report.
            close = did_you_mean(section, list(SECTIONS))
            if close is not None and isinstance(SECTIONS[close], SectionSpec):
                problems.extend(_check_section(SECTIONS[close], keys, context))
        elif isinstance(spec, SectionSpec):
            problems.extend(_check_section(spec, keys, context))
        else:
            problems.extend(_check_map_section(spec, keys))
    problems.extend(check_explain(layered, context))

    steps = selected_steps(layered, context)
    # A file that could not be read may hold the missing keys, so report missing keys only
    # when every source was read. The tuning rules also report missing keys and sections.
    if not layered.problems:
        problems.extend(_check_required(layered, steps))
        problems.extend(check_tuning(layered, steps, context))
    if steps is not None:
        problems.extend(_check_step_inputs(steps, layered.values["pipeline"]["steps"]))
    return sort_problems(problems, layered.sources)


def selected_steps(layered: LayeredSources, context: CheckContext) -> tuple[str, ...] | None:
    """Return the steps in pipeline.steps, or None when the key is missing or invalid."""
    raw = layered.values.get("pipeline", {}).get("steps")
    step_list = StepList()
    if raw is None or step_list.check(raw.value, context) is not None:
        return None
    return step_list.convert(raw.value)


def sort_problems(problems: list[Problem], sources: list[str]) -> list[Problem]:
    """Sort by source in layering order (unreadable files first), then by line."""

    def order(problem: Problem) -> tuple[int, float]:
        rank = sources.index(problem.file) if problem.file in sources else -1
        return (rank, problem.line if problem.line is not None else math.inf)

    return sorted(problems, key=order)


def _unknown_section(section: str, origins: list[Origin]) -> Iterator[Problem]:
    step, _, suffix = section.partition(".")
    if suffix == "arguments" and JOB_KINDS.get(step) == "training":
        fix = f"training jobs take no container arguments, so use [{step}.hyperparameters]"
    else:
        close = did_you_mean(section, list(SECTIONS))
        if close is not None:
            fix = f"rename it to [{close}]"
        else:
            fix = f"remove it. Known sections: {', '.join(SECTIONS)}"
    for origin in origins:
        yield Problem.at(origin, section, None, None, "unknown section", fix)


def _check_section(
    spec: SectionSpec, keys: Mapping[str, RawValue], context: CheckContext
) -> Iterator[Problem]:
    for key, raw in keys.items():
        key_spec = spec.keys.get(key)
        if key_spec is None:
            close = did_you_mean(key, list(spec.keys))
            if close is not None:
                fix = f'rename it to "{close}"'
            else:
                fix = f"remove it. [{spec.name}] accepts: {', '.join(spec.keys)}"
            yield Problem.at(raw.origin, spec.name, key, raw.value, "unknown key", fix)
            continue
        if not raw.value:
            example = key_spec.example or key_spec.default
            yield Problem.at(
                raw.origin,
                spec.name,
                key,
                raw.value,
                "empty value",
                f'set a value, e.g. "{key} = {example}"',
            )
            continue
        issue = key_spec.type.check(raw.value, context)
        if issue is not None:
            yield Problem.at(raw.origin, spec.name, key, raw.value, issue.message, issue.fix)


def _check_map_section(spec: MapSectionSpec, keys: Mapping[str, RawValue]) -> Iterator[Problem]:
    for key, raw in keys.items():
        key_issue = spec.key_check(key)
        if key_issue is not None:
            yield Problem.at(
                raw.origin, spec.name, key, raw.value, key_issue.message, key_issue.fix
            )
        value_issue = spec.value_check(raw.value)
        if value_issue is not None:
            yield Problem.at(
                raw.origin, spec.name, key, raw.value, value_issue.message, value_issue.fix
            )

    if len(keys) > spec.max_entries:
        first_extra = list(keys.values())[spec.max_entries]
        excess = len(keys) - spec.max_entries
        yield Problem.at(
            first_extra.origin,
            spec.name,
            None,
            None,
            f"{len(keys)} {spec.entry_noun}, SageMaker accepts at most {spec.max_entries}",
            f"remove {excess} of them",
        )


def _check_required(layered: LayeredSources, steps: tuple[str, ...] | None) -> Iterator[Problem]:
    base_file = layered.sources[0] if layered.sources else None
    for name, spec in SECTIONS.items():
        if not isinstance(spec, SectionSpec):
            continue
        if spec.step is not None and (steps is None or spec.step not in steps):
            continue

        required = {key: key_spec for key, key_spec in spec.keys.items() if key_spec.required}
        if name not in layered.values and spec.optional:
            continue
        if name not in layered.values:
            settings = ", ".join(
                f'"{key} = {key_spec.example}"' for key, key_spec in required.items()
            )
            fix = f"add a [{name}] section with {settings}"
            if spec.step is not None:
                fix += f", or remove {spec.step} from [pipeline] steps"
            yield Problem(base_file, None, name, None, None, "missing section", fix)
            continue

        origin = layered.section_origins[name][0]
        for key, key_spec in required.items():
            if key not in layered.values[name]:
                yield Problem.at(
                    origin,
                    name,
                    key,
                    None,
                    "missing required key",
                    f'add "{key} = {key_spec.example}"',
                )


def _check_step_inputs(steps: tuple[str, ...], raw_steps: RawValue) -> Iterator[Problem]:
    for step in steps:
        # upstream step -> the inputs that step reads from it
        missing: dict[str, list[str]] = {}
        for input_name, upstream in STEP_INPUTS[step].items():
            if upstream not in steps:
                missing.setdefault(upstream, []).append(input_name)
        if not missing:
            continue
        needs = ", ".join(
            f"{upstream} (for {' and '.join(inputs)})" for upstream, inputs in missing.items()
        )
        yield Problem.at(
            raw_steps.origin,
            "pipeline",
            "steps",
            raw_steps.value,
            f"{step} needs steps that are not selected: {needs}",
            f"add {' and '.join(missing)} to steps, or remove {step}",
        )

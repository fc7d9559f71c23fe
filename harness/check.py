"""Contract checks of the pipeline's steps, the middle stage of `harness check`.

Each check compares a step's code with the plan that `build_plan` makes from the
configuration: the arguments and hyperparameters the job passes, the container paths, the
metric definitions and the condition's JSON path. Step code is read with `ast` or run in a
subprocess (`script --help`) and is never imported into the harness process, because steps
need libraries (TensorFlow, PySpark) and `sys.path` entries that harness does not set up.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import harness
from harness.config import Config, Origin, StepConfig
from harness.config.checks import did_you_mean
from harness.errors import HarnessError
from harness.local.cache import canonical_digest
from harness.plan import build
from harness.plan.build import PlannedJob, build_plan, code_bundle
from harness.plan.code import parse_python_file, step_code_files

# `--help` of each of the five reference steps took 0.04 to 0.15 s on a 2-core Linux machine
# (evaluate the longest, because it imports numpy), since they parse their arguments before
# importing TensorFlow or PySpark. The limit leaves room for a loaded machine and stays
# short enough for a pre-commit hook.
HELP_TIMEOUT_SECONDS = 10.0

PROCESSING_ROOT = "/opt/ml/processing/"

# The only folder of steps/ that steps may import from, because every job ships it.
SHARED_CODE_FOLDER = "common"

# Leaves of each metric entry in evaluation.json: {"value": mean, "standard_deviation": std},
# as docs/step-contract.md gives the layout.
METRIC_ENTRY_KEYS = ("value", "standard_deviation")

# The module that builds every job's container arguments and paths, named in problems with them.
_PLAN_SOURCE = Path(build.__file__).relative_to(Path(harness.__file__).parent.parent).as_posix()

# Starts the step script as `python script --help` would, with every socket connection and
# name lookup raising OSError, so that reading the options cannot reach the network.
_HELP_RUNNER = """\
import os, runpy, socket, sys

def _blocked(*args, **kwargs):
    raise OSError("network access is blocked while harness reads the step's --help")

socket.socket.connect = _blocked
socket.socket.connect_ex = _blocked
socket.getaddrinfo = _blocked
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(script))
runpy.run_path(script, run_name="__main__")
"""


@dataclass(frozen=True)
class CheckProblem:
    """One failed contract check.

    ``file`` is a path relative to the project root, a configuration source as the user gave
    it (``config.ini``, ``--set #1``) or ``harness/plan/build.py``. ``step`` names the step
    or steps the problem affects, comma-separated. ``message`` and ``fix`` are sentences
    without the final period.
    """

    step: str
    file: str
    line: int | None
    message: str
    fix: str

    def __str__(self) -> str:
        location = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{location} [{self.step}] {_end_sentence(self.message)} Fix: {_end_sentence(self.fix)}"
        )


class HelpError(Exception):
    """A step script's ``--help`` failed, timed out or printed no argparse options."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def check_steps(config: Config, run_id: str = "check") -> list[CheckProblem]:
    """Run every contract check on every step the configuration selects; return all problems.

    A problem found in a shared file for several steps is listed once, with the steps
    joined in ``step``.

    Raises:
        PlanError: the configuration does not form a runnable pipeline.
    """
    # A tuning job's training jobs get the train step's hyperparameters with other values,
    # so the untuned training job stands for them in the checks.
    plan = build_plan(dataclasses.replace(_without_local_dataset(config), tuning=None), run_id)
    problems: list[CheckProblem] = []
    code_files: dict[str, list[Path]] = {}
    for job in plan.jobs:
        if job.kind in ("processing", "training"):
            step = config.steps[job.step]
            problems += _check_job_step(config, step, job, code_files)

    train = config.steps.get("train")
    if train is not None and "train" in code_files:
        problems += check_metric_definitions(config, train, code_files["train"])
    evaluate = config.steps.get("evaluate")
    evaluate_parses = not any(
        "evaluate" in problem.step and problem.message.startswith("syntax error")
        for problem in problems
    )
    # A file that does not parse hides evaluation.json's keys, and its syntax error is reported.
    if (
        config.condition is not None
        and evaluate is not None
        and "evaluate" in code_files
        and evaluate_parses
    ):
        problems += check_condition_path(config, code_files["evaluate"])
    return _merge_repeats(problems)


def _without_local_dataset(config: Config) -> Config:
    # build_plan hashes a local dataset folder, which need not exist for these checks (the
    # sample data is not in git), and the dataset changes no argument that a step receives.
    if config.pipeline.dataset.startswith("s3://"):
        return config
    placeholder = f"s3://{config.session.bucket}/harness-check/dataset/"
    pipeline = dataclasses.replace(config.pipeline, dataset=placeholder)
    return dataclasses.replace(config, pipeline=pipeline)


def _check_job_step(
    config: Config, step: StepConfig, job: PlannedJob, code_files: dict[str, list[Path]]
) -> list[CheckProblem]:
    problems = check_entry_point(config, step)
    if problems:
        return problems

    script = config.project_root / step.entry_point
    files = step_code_files(steps_root(config).resolve(), script.resolve())
    code_files[step.name] = files
    syntax_problems = check_syntax(config, step, files)
    problems += syntax_problems
    problems += check_imports(config, step, files)
    if job.kind == "processing":
        problems += check_container_paths(config, step, job)
        problems += check_path_defaults(config, step, job)
    if syntax_problems:
        # --help would only fail on the same syntax error.
        return problems

    try:
        options = _remembered_options(script, steps_root(config))
    except HelpError as error:
        problems.append(CheckProblem(step.name, step.entry_point, None, error.message, error.fix))
        return problems
    if job.kind == "processing":
        problems += check_arguments(config, step, job, options)
    else:
        problems += check_hyperparameters(config, step, job, options)
    return problems


# Check 1: the entry point exists, is inside steps/ and parses.


def check_entry_point(config: Config, step: StepConfig) -> list[CheckProblem]:
    """Check that the entry point is a file inside steps/, the folder shipped as the job's code."""
    file, line = _origin(config, step.name, "entry_point")
    path = (config.project_root / step.entry_point).resolve()
    if not path.is_relative_to(steps_root(config).resolve()):
        message = (
            f'entry point "{step.entry_point}" is outside the steps/ folder, which harness '
            "ships as the job's code"
        )
        fix = f"move the script under steps/ and set [{step.name}] entry_point to its path"
        return [CheckProblem(step.name, file, line, message, fix)]
    if not path.is_file():
        message = f'entry point "{step.entry_point}" not found: {path} is not a file'
        fix = f"create the script or correct [{step.name}] entry_point"
        return [CheckProblem(step.name, file, line, message, fix)]
    return []


def check_syntax(config: Config, step: StepConfig, files: Iterable[Path]) -> list[CheckProblem]:
    """Check that every Python file of the step's code parses."""
    problems = []
    for path in _python_files(files):
        try:
            parse_python_file(path)
        except SyntaxError as error:
            message = f"syntax error: {error.msg}"
            fix = (
                "correct the syntax, because the job fails on import before it parses any argument"
            )
            problems.append(
                CheckProblem(step.name, display_path(config, path), error.lineno, message, fix)
            )
        except ValueError as error:
            # A file that is not UTF-8 text: UnicodeDecodeError is a ValueError.
            message = f"invalid Python source: {error}"
            fix = "save the file as UTF-8 text"
            problems.append(CheckProblem(step.name, display_path(config, path), None, message, fix))
    return problems


# Check 2: step code imports neither harness nor another step's folder.


def check_imports(config: Config, step: StepConfig, files: Iterable[Path]) -> list[CheckProblem]:
    """Check that no file imports harness, and that only steps/common is shared between steps."""
    root = steps_root(config)
    step_folders = {
        p.name
        for p in root.iterdir()
        if p.is_dir() and p.name not in (SHARED_CODE_FOLDER, "__pycache__")
    }
    problems = []
    for path in _python_files(files):
        tree = _parse_or_none(path)
        if tree is None:
            continue
        own_folder = path.parent
        for line, module in _absolute_imports(tree):
            top = module.split(".")[0]
            where = display_path(config, path)
            if top == "harness":
                message = (
                    f'imports "{module}": step code runs in a SageMaker container, where '
                    "harness is not installed"
                )
                fix = (
                    "remove the import and pass what the step needs as an argument, "
                    "hyperparameter or environment variable"
                )
                problems.append(CheckProblem(step.name, where, line, message, fix))
            elif top in step_folders and not _is_own_module(own_folder, root, top):
                message = f'imports "{module}" from steps/{top}/, the folder of another step'
                fix = (
                    f"move the shared code to steps/{SHARED_CODE_FOLDER}/ and import it from there"
                )
                problems.append(CheckProblem(step.name, where, line, message, fix))
    return problems


@functools.cache
def _absolute_imports(tree: ast.AST) -> tuple[tuple[int, str], ...]:
    """Return (line, dotted module name) for each absolute import in ``tree``.

    Trees hash by identity, and parse_python_file returns the same tree for the same bytes.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return tuple(found)


def _is_own_module(own_folder: Path, root: Path, name: str) -> bool:
    # A step's folder is the first entry of its sys.path, so `import name` finds a module of
    # the step's own folder before a folder of steps/ with the same name.
    if own_folder.resolve() == (root / name).resolve():
        return True
    return (own_folder / f"{name}.py").is_file() or (own_folder / name).is_dir()


# Check 3: the script accepts every argument and hyperparameter that the job passes.


# Options read from each script's --help, by the digest of the code it runs. `harness watch`
# checks after every save, and reading --help costs a Python start-up per step.
_OPTIONS_BY_CODE: dict[tuple[str, str], frozenset[str]] = {}


def _remembered_options(script: Path, steps_folder: Path) -> frozenset[str]:
    from harness.plan.build import hash_files

    digest = hash_files(steps_folder, step_code_files(steps_folder, script))
    key = (str(script.resolve()), digest)
    if key not in _OPTIONS_BY_CODE:
        _OPTIONS_BY_CODE[key] = read_accepted_options(script, steps_folder)
    return _OPTIONS_BY_CODE[key]


def read_accepted_options(
    script: Path, steps_folder: Path, timeout: float = HELP_TIMEOUT_SECONDS
) -> frozenset[str]:
    """Run ``script --help`` in a subprocess and return the option strings argparse lists.

    The subprocess runs in ``steps_folder`` with this interpreter, SAGEMAKER_BASE_DIR set to
    an empty temporary folder, no SM_* variables and every socket connection blocked.

    Raises:
        HelpError: the script exited with an error, timed out or printed no argparse help.
    """
    with tempfile.TemporaryDirectory(prefix="harness-check-") as base_dir:
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SM_", "SAGEMAKER_"))
        }
        environment.update(
            SAGEMAKER_BASE_DIR=base_dir,
            PYTHONDONTWRITEBYTECODE="1",
            # Wide enough that argparse does not wrap usage lines.
            COLUMNS="200",
        )
        command = [sys.executable, "-c", _HELP_RUNNER, str(script.resolve()), "--help"]
        try:
            result = subprocess.run(
                command,
                cwd=steps_folder,
                env=environment,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise HelpError(
                f"`{script.name} --help` did not finish within {timeout:g} s, so harness cannot "
                "read the options it accepts",
                "parse the arguments before importing TensorFlow, PySpark or other slow "
                "libraries, so that --help returns at once",
            ) from error

    if result.returncode != 0:
        last_lines = " | ".join(result.stderr.strip().splitlines()[-3:]) or "no error output"
        raise HelpError(
            f"`{script.name} --help` failed with exit status {result.returncode}: {last_lines}",
            "fix the error above; the script must reach its argparse parser without doing "
            "other work first, so that --help prints the options and exits with status 0",
        )
    options = parse_help_options(result.stdout)
    if not options:
        raise HelpError(
            f"`{script.name} --help` printed no argparse options, so harness cannot tell which "
            "arguments the script accepts",
            "parse the arguments with argparse, as the other steps do",
        )
    return options


# An option line of argparse's help: two to six spaces, then the option strings, e.g.
# "  --batch_size BATCH_SIZE, --batch-size BATCH_SIZE   queries per batch". Help text
# continues on lines indented to the help column (24 spaces by default).
_OPTION_LINE = re.compile(r" {2,6}(-\S.*)")


def parse_help_options(help_text: str) -> frozenset[str]:
    """Return the option strings (``--epochs``, ``-h``) in argparse help output."""
    if not help_text.startswith("usage:"):
        return frozenset()
    options = set()
    for line in help_text.splitlines():
        match = _OPTION_LINE.fullmatch(line)
        if match is None:
            continue
        invocation = re.split(r"\s{2,}", match.group(1), maxsplit=1)[0]
        for part in invocation.split(", "):
            word = part.split()[0] if part.split() else ""
            if word.startswith("-"):
                options.add(word)
    return frozenset(options)


def check_hyperparameters(
    config: Config, step: StepConfig, job: PlannedJob, options: frozenset[str]
) -> list[CheckProblem]:
    """Check that the script accepts every hyperparameter except SageMaker's ``sagemaker_*``."""
    problems = []
    section = f"{step.name}.hyperparameters"
    for key in job.request["HyperParameters"]:
        if key.startswith("sagemaker_"):
            continue
        # The SageMaker training toolkit passes each hyperparameter as --<key> <value>.
        issue = _option_issue(f"--{key}", options)
        if issue is None:
            continue
        file, line = _origin(config, section, key)
        message = f'hyperparameter "{key}" in [{section}]: {step.entry_point} {issue[0]}'
        problems.append(CheckProblem(step.name, file, line, message, issue[1]))
    return problems


def check_arguments(
    config: Config, step: StepConfig, job: PlannedJob, options: frozenset[str]
) -> list[CheckProblem]:
    """Check that the script accepts every ``--key`` of the processing job's ContainerArguments."""
    problems = []
    section = f"{step.name}.arguments"
    for token in job.request["AppSpecification"]["ContainerArguments"]:
        if not token.startswith("--"):
            continue
        option = token.split("=", 1)[0]
        issue = _option_issue(option, options)
        if issue is None:
            continue
        key = option[2:]
        if key in step.arguments:
            file, line = _origin(config, section, key)
            message = f'argument "{key}" in [{section}]: {step.entry_point} {issue[0]}'
            fix = issue[1]
        else:
            # The plan passes this argument to every job of the step, so the script must change.
            file, line = _PLAN_SOURCE, None
            message = f"harness passes {option}, but {step.entry_point} {issue[0]}"
            fix = f"add {option} to the arguments that {step.entry_point} parses"
        problems.append(CheckProblem(step.name, file, line, message, fix))
    return problems


def _option_issue(option: str, options: frozenset[str]) -> tuple[str, str] | None:
    """Return (message, fix) when ``option`` is not one of ``options``, else None.

    The message completes a sentence that starts with the script's path.
    """
    if option in options:
        return None
    long_options = sorted(o for o in options if o.startswith("--") and o != "--help")
    prefixed = [o for o in long_options if o.startswith(option)]
    if len(prefixed) == 1:
        # argparse accepts a unique prefix by default, but a new option that shares the
        # prefix would make it ambiguous, and parse_known_args ignores it when allow_abbrev
        # is off.
        return (
            f"accepts {option} only as an abbreviation of {prefixed[0]}",
            f'use the full name "{prefixed[0][2:]}"',
        )
    listed = ", ".join(long_options) or "no options"
    guess = did_you_mean(option, long_options)
    if guess is not None:
        fix = f'use "{guess[2:]}" (the script accepts {listed})'
    else:
        fix = f"remove it, or use one of {listed}"
    return f"does not accept {option}", fix


# Check 4: container paths of processing jobs.


def check_container_paths(config: Config, step: StepConfig, job: PlannedJob) -> list[CheckProblem]:
    """Check the LocalPath of each input and output, and each path argument of the job.

    Every LocalPath is under /opt/ml/processing/ and no two share one. Every argument value
    under /opt/ml/ is at, under or above some LocalPath, because SageMaker neither downloads
    to nor uploads from any other container path.
    """
    problems = []
    local_paths = _local_paths(job)
    seen: dict[str, str] = {}
    for name, path in local_paths:
        if not path.startswith(PROCESSING_ROOT):
            message = f'{name} has LocalPath "{path}", outside {PROCESSING_ROOT}'
            fix = f"put every processing input and output under {PROCESSING_ROOT}"
            problems.append(CheckProblem(step.name, _PLAN_SOURCE, None, message, fix))
        if path in seen:
            message = f'{name} and {seen[path]} share the LocalPath "{path}"'
            fix = "give each input and output its own LocalPath"
            problems.append(CheckProblem(step.name, _PLAN_SOURCE, None, message, fix))
        seen.setdefault(path, name)

    section = f"{step.name}.arguments"
    for option, value in _path_arguments(job):
        if any(_paths_overlap(value, path) for _, path in local_paths):
            continue
        key = option[2:]
        if key in step.arguments:
            file, line = _origin(config, section, key)
        else:
            file, line = _PLAN_SOURCE, None
        message = (
            f'{option} "{value}" is not at, under or above any input or output LocalPath, so '
            "SageMaker puts no input there and uploads nothing written there"
        )
        paths = ", ".join(path for _, path in local_paths)
        fix = f"use a path under one of {paths}"
        problems.append(CheckProblem(step.name, file, line, message, fix))
    return problems


def _local_paths(job: PlannedJob) -> list[tuple[str, str]]:
    """Return ("input <name>" or "output <name>", LocalPath) for each input and output."""
    request = job.request
    paths = [
        (f"input {item['InputName']}", item["S3Input"]["LocalPath"])
        for item in request["ProcessingInputs"]
        if "S3Input" in item
    ]
    paths += [
        (f"output {item['OutputName']}", item["S3Output"]["LocalPath"])
        for item in request.get("ProcessingOutputConfig", {}).get("Outputs", [])
        if "S3Output" in item
    ]
    return paths


def _path_arguments(job: PlannedJob) -> list[tuple[str, str]]:
    """Return (option, value) for each ``--option value`` whose value is under /opt/ml/."""
    arguments = job.request["AppSpecification"]["ContainerArguments"]
    return [
        (option, value)
        for option, value in zip(arguments, arguments[1:], strict=False)
        if option.startswith("--") and value.startswith("/opt/ml/")
    ]


def _paths_overlap(first: str, second: str) -> bool:
    first, second = first.rstrip("/"), second.rstrip("/")
    return first == second or first.startswith(second + "/") or second.startswith(first + "/")


def check_path_defaults(config: Config, step: StepConfig, job: PlannedJob) -> list[CheckProblem]:
    """Check that each path option harness passes defaults to the same container path.

    The contract has every path argument default to the container path, so that the script
    also runs in a SageMaker job started without those arguments. Options whose default is
    not a string under /opt/ml/ (such as evaluate's optional --schema-dir) are not checked,
    nor arguments that the configuration sets.
    """
    script = config.project_root / step.entry_point
    tree = _parse_or_none(script)
    if tree is None:
        return []
    defaults = _argument_defaults(tree)
    problems = []
    for option, value in _path_arguments(job):
        if option[2:] in step.arguments or option not in defaults:
            continue
        default, line = defaults[option]
        if default.startswith("/opt/ml/") and default != value:
            message = f'{option} defaults to "{default}", but harness passes "{value}"'
            fix = f'set the default of {option} to "{value}", the container path'
            problems.append(
                CheckProblem(step.name, display_path(config, script), line, message, fix)
            )
    return problems


def _argument_defaults(tree: ast.AST) -> dict[str, tuple[str, int]]:
    """Return {option string: (default, line)} for each add_argument call with a string default."""
    defaults = {}
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            continue
        names = [
            a.value
            for a in node.args
            if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("-")
        ]
        for keyword in node.keywords:
            if (
                keyword.arg == "default"
                and isinstance(keyword.value, ast.Constant)
                and isinstance(keyword.value.value, str)
            ):
                for name in names:
                    defaults[name] = (keyword.value.value, keyword.value.lineno)
    return defaults


# Check 5: metric definitions and the condition's JSON path.


def check_metric_definitions(
    config: Config, step: StepConfig, files: Iterable[Path]
) -> list[CheckProblem]:
    """Check that each metric regex matches a line the training script prints and captures a number.

    The sample lines are the script's printed f-strings with each replacement field filled
    in: a field with a format spec gets 0.8125 in that format (``{loss:.4f}`` gives 0.8125),
    and a field without one gets 3 in one sample and 0.8125 in another, because its type is
    unknown. A script that prints no f-string is checked against ``epoch=1 <name>=0.8125``
    for each metric name.
    """
    # The entry point's own lines come first, so that problems quote one of them.
    script = (config.project_root / step.entry_point).resolve()
    samples = printed_line_samples([script, *(p for p in files if p.resolve() != script)])
    if not samples:
        samples = [f"epoch=1 {d['Name']}=0.8125" for d in step.metric_definitions]
    section = f"{step.name}.metrics"
    problems = []
    for definition in step.metric_definitions:
        name, regex = definition["Name"], definition["Regex"]
        file, line = _origin(config, section, name)
        matches = [m for m in (re.search(regex, s) for s in samples) if m is not None]
        if not matches:
            message = (
                f'metric "{name}" in [{section}]: the regex "{regex}" matches no line that '
                f'{step.entry_point} prints, such as "{samples[0]}"'
            )
            problems.append(CheckProblem(step.name, file, line, message, _regex_fix(name, samples)))
            continue
        captured = matches[0].group(1) if matches[0].re.groups else matches[0].group(0)
        if not _is_number(captured):
            message = (
                f'metric "{name}" in [{section}]: the regex "{regex}" captures "{captured}" '
                f'from "{matches[0].string}", which is not a number'
            )
            problems.append(CheckProblem(step.name, file, line, message, _regex_fix(name, samples)))
    return problems


def printed_line_samples(files: Iterable[Path]) -> list[str]:
    """Return samples of each f-string passed to print() in ``files``, in file order."""
    samples = []
    for path in _python_files(files):
        tree = _parse_or_none(path)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id != "print":
                    continue
                for argument in node.args:
                    if not isinstance(argument, ast.JoinedStr):
                        continue
                    for unformatted in ("3", "0.8125"):
                        sample = _render(argument, unformatted)
                        if sample not in samples:
                            samples.append(sample)
    return samples


def _render(joined: ast.JoinedStr, unformatted: str) -> str:
    """Fill in an f-string, with ``unformatted`` in each field that has no format spec."""
    parts = []
    for value in joined.values:
        if isinstance(value, ast.Constant):
            parts.append(str(value.value))
        elif isinstance(value, ast.FormattedValue):
            spec = _format_spec(value)
            parts.append(_sample_value(spec) if spec else unformatted)
    return "".join(parts)


def _format_spec(value: ast.FormattedValue) -> str:
    spec = value.format_spec
    if isinstance(spec, ast.JoinedStr) and all(isinstance(v, ast.Constant) for v in spec.values):
        return "".join(str(v.value) for v in spec.values if isinstance(v, ast.Constant))
    return ""


def _sample_value(spec: str) -> str:
    # An integer format such as "d" rejects a float, so integer formats get 3.
    for sample in (0.8125, 3):
        try:
            return format(sample, spec)
        except ValueError:
            continue
    return "0.8125"


def _regex_fix(name: str, samples: list[str]) -> str:
    if any(f"{name}=" in sample for sample in samples):
        return (
            f'match the printed line and capture the number, e.g. "{re.escape(name)}=([0-9.eE+-]+)"'
        )
    return (
        "match one of the printed lines and capture the number with one group, e.g. ([0-9.eE+-]+)"
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_condition_path(config: Config, evaluate_files: Iterable[Path]) -> list[CheckProblem]:
    """Check that the condition's json_path starts with a key that evaluate writes.

    The top-level keys are those of the dict literal that evaluate passes to json.dump. A
    path into ``ranking_metrics`` must also name a metric of METRIC_NAMES (when the step
    code defines it as a literal) and end at ``value`` or ``standard_deviation``.
    """
    condition = config.condition
    evaluate = config.steps.get("evaluate")
    if condition is None or evaluate is None:
        return []
    files = list(evaluate_files)
    file, line = _origin(config, "condition", "json_path")
    path = condition.json_path
    segments = [re.sub(r"\[\d+\]", "", s) for s in path.split(".")]

    keys = _json_dump_keys(files)
    if not keys:
        message = (
            f'cannot check json_path "{path}": {evaluate.entry_point} passes no dict literal '
            "to json.dump, so the keys of evaluation.json are unknown"
        )
        fix = "build evaluation.json as a dict literal assigned to a name passed to json.dump"
        return [CheckProblem("condition", file, line, message, fix)]
    if segments[0] not in keys:
        message = (
            f'json_path "{path}" starts with "{segments[0]}", a key that '
            f"{evaluate.entry_point} does not write to evaluation.json"
        )
        fix = f"start the path with one of {', '.join(keys)}"
        return [CheckProblem("condition", file, line, message, fix)]
    if segments[0] != "ranking_metrics":
        return []

    metric_names = _metric_names(files)
    if len(segments) < 2 or (metric_names and segments[1] not in metric_names):
        named = segments[1] if len(segments) > 1 else ""
        message = f'json_path "{path}" names no metric of ranking_metrics ("{named}")'
        known = metric_names or ["ndcg_at_10"]
        example = "ndcg_at_10" if "ndcg_at_10" in known else known[0]
        fix = f'use one of {", ".join(known)}, e.g. "ranking_metrics.{example}.value"'
        return [CheckProblem("condition", file, line, message, fix)]
    if len(segments) != 3 or segments[2] not in METRIC_ENTRY_KEYS:
        message = (
            f'json_path "{path}" does not end at a number: each metric of ranking_metrics '
            f"is an object with {' and '.join(METRIC_ENTRY_KEYS)}"
        )
        fix = f'use "ranking_metrics.{segments[1]}.value"'
        return [CheckProblem("condition", file, line, message, fix)]
    return []


def _json_dump_keys(files: list[Path]) -> list[str]:
    """Return the string keys of dict literals passed to json.dump or json.dumps, in order."""
    keys: list[str] = []
    for path in _python_files(files):
        tree = _parse_or_none(path)
        if tree is None:
            continue
        dicts_by_name: dict[str, list[ast.Dict]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        dicts_by_name.setdefault(target.id, []).append(node.value)
        for node in ast.walk(tree):
            if not (_is_json_dump(node) and node.args):
                continue
            argument = node.args[0]
            if isinstance(argument, ast.Dict):
                literals = [argument]
            elif isinstance(argument, ast.Name):
                literals = dicts_by_name.get(argument.id, [])
            else:
                literals = []
            for literal in literals:
                for key in literal.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        if key.value not in keys:
                            keys.append(key.value)
    return keys


def _is_json_dump(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("dump", "dumps")
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "json"
    )


def _metric_names(files: list[Path]) -> list[str]:
    """Return METRIC_NAMES when a file assigns it a tuple or list of strings, else []."""
    for path in _python_files(files):
        tree = _parse_or_none(path)
        if tree is None:
            continue
        for node in tree.body:
            if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple | ast.List)):
                continue
            if any(isinstance(t, ast.Name) and t.id == "METRIC_NAMES" for t in node.targets):
                return [
                    e.value
                    for e in node.value.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                ]
    return []


# Shared helpers.


def steps_root(config: Config) -> Path:
    """Return the steps/ folder that every job receives as its code."""
    return config.project_root / "steps"


def display_path(config: Config, path: Path) -> str:
    """Return ``path`` relative to the project root when it is inside, else absolute."""
    resolved = path.resolve()
    root = config.project_root.resolve()
    if resolved.is_relative_to(root):
        return resolved.relative_to(root).as_posix()
    return str(resolved)


def _origin(config: Config, section: str, key: str) -> tuple[str, int | None]:
    """Return the file and line that set ``[section] key``."""
    _value, origin = config.values.get(section, {}).get(key, ("", Origin("default")))
    return origin.file, origin.line


def _python_files(files: Iterable[Path]) -> list[Path]:
    return [path for path in files if path.suffix == ".py"]


def _parse_or_none(path: Path) -> ast.Module | None:
    """Parse ``path``, or return None for a file that check_syntax reports."""
    try:
        return parse_python_file(path)
    except (SyntaxError, ValueError):
        return None


def _merge_repeats(problems: list[CheckProblem]) -> list[CheckProblem]:
    """Merge problems that differ only in their step, joining the steps in first-seen order."""
    merged: dict[tuple[str, int | None, str, str], list[str]] = {}
    for problem in problems:
        steps = merged.setdefault((problem.file, problem.line, problem.message, problem.fix), [])
        if problem.step not in steps:
            steps.append(problem.step)
    return [
        CheckProblem(", ".join(steps), file, line, message, fix)
        for (file, line, message, fix), steps in merged.items()
    ]


def _end_sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else f"{text}."


class CheckError(HarnessError):
    """Step contract checks failed. ``problems`` lists every one of them."""

    def __init__(self, problems: Sequence[CheckProblem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"Step contract checks failed ({count} {noun}):"]
        lines += [f"  {problem}" for problem in self.problems]
        super().__init__("\n".join(lines))


def preflight(config: Config, workspace: Path) -> None:
    """Run the contract checks before any job starts, unless they passed on this exact input.

    A pass is remembered under `<workspace>/checks/` by the digest of the `steps/` folder,
    the effective configuration and the harness version, so an unchanged project pays for
    the checks once.

    Raises:
        CheckError: the checks found problems.
    """
    digest = canonical_digest(
        {
            "harness": harness.__version__,
            "code": code_bundle(config.project_root).digest,
            "configuration": {
                section: {key: value for key, (value, _) in values.items()}
                for section, values in config.effective().items()
            },
        }
    )
    marker = workspace / "checks" / f"{digest}.passed"
    if marker.exists():
        return
    problems = check_steps(config)
    if problems:
        raise CheckError(problems)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()

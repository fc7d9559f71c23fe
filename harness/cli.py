"""The `harness` command: run, config, models."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness import __version__
from harness.errors import HarnessError

logger = logging.getLogger("harness")

# Exit statuses: 1 when a job failed, 2 for a user mistake (configuration, arguments), 130 on Ctrl-C.
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# 128 + SIGPIPE, what a shell reports for a program whose output pipe closed.
EXIT_BROKEN_PIPE = 141


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--logs",
        dest="output",
        action="store_const",
        const="logs",
        default="progress",
        help="print every line the jobs print (by default only metric lines, such as epochs)",
    )
    output.add_argument(
        "-q",
        "--quiet",
        dest="output",
        action="store_const",
        const="quiet",
        help="print step starts and ends only",
    )


def _add_profile_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        choices=["train"],
        metavar="STEP",
        help="trace STEP (train) with the TensorFlow profiler into its TensorBoard folder "
        "and print ms per step, input against compute time and the slowest operations",
    )


def _apply_profile(args: argparse.Namespace) -> None:
    """Add the override that makes train trace its steps, unless the configuration sets them."""
    from harness.report.profile import DEFAULT_PROFILE_STEPS

    if not getattr(args, "profile", None):
        return
    config = _load(args)
    if args.profile not in config.steps:
        raise HarnessError(
            f"--profile {args.profile}: the step is not in [pipeline] steps "
            f"({', '.join(config.pipeline.steps)}). Fix: add it, or run without --profile."
        )
    if not config.section_values(args.profile).get("profile_steps"):
        args.overrides = [*args.overrides, f"train.profile_steps={DEFAULT_PROFILE_STEPS}"]


def _add_fixtures_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fixtures",
        type=Path,
        default=Path("fixtures/fixtures.ini"),
        metavar="FILE",
        help="override file that points the run at small data (default: fixtures/fixtures.ini)",
    )


def _fixtures_file(args: argparse.Namespace, alternative: str) -> Path:
    """Return the --fixtures file, relative to the base configuration's folder."""
    fixtures = args.fixtures
    if not fixtures.is_absolute():
        fixtures = args.config.resolve().parent / fixtures
    if not fixtures.exists():
        raise HarnessError(
            f"--fixtures {args.fixtures}: file not found. Fix: pass the override file that "
            f"points the pipeline at small data, or use {alternative}."
        )
    return fixtures


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("config.ini"),
        metavar="FILE",
        help="base configuration file (default: config.ini in the current folder)",
    )
    parser.add_argument(
        "-c",
        dest="extra_files",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="override file applied after config.ini and config.local.ini; repeat for more, the last wins",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one value, applied after every file, e.g. --set train.hyperparameters.epochs=5",
    )
    parser.add_argument(
        "--no-local",
        dest="use_local",
        action="store_false",
        help="ignore config.local.ini",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Run a SageMaker ranking pipeline locally, against an embedded S3 and SageMaker API.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log harness internals too")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the pipeline on the configured target")
    _add_config_options(run)
    _add_output_options(run)
    run.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="run every step, even those whose cached outputs are still valid",
    )
    run.add_argument(
        "--from",
        dest="rerun_from",
        metavar="STEP",
        help="rerun STEP and every step after it, ignoring their cache entries",
    )
    _add_profile_option(run)

    config = commands.add_parser("config", help="show or validate the effective configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_commands.add_parser("show", help="print the effective configuration")
    _add_config_options(show)
    show.add_argument("--origin", action="store_true", help="print the file and line of each value")
    validate = config_commands.add_parser(
        "validate", help="validate the configuration and the dataset"
    )
    _add_config_options(validate)

    check = commands.add_parser(
        "check",
        help="validate the configuration, check every step's contract, run changed steps on fixtures",
    )
    _add_config_options(check)
    _add_output_options(check)
    _add_fixtures_option(check)
    check.add_argument("--no-run", action="store_true", help="only validate and check; run no job")

    watch = commands.add_parser(
        "watch", help="rerun the steps a saved file affects, with warm interpreters"
    )
    _add_config_options(watch)
    _add_output_options(watch)
    _add_fixtures_option(watch)
    watch.add_argument(
        "--full-data",
        action="store_true",
        help="watch and run on the configured dataset instead of the fixtures",
    )
    watch.add_argument(
        "--cold",
        action="store_true",
        help="start every job as a fresh process (no warm TensorFlow or Spark)",
    )
    _add_profile_option(watch)

    models = commands.add_parser(
        "models", help="list the model packages in the local model registry"
    )
    _add_config_options(models)
    models.add_argument("--json", action="store_true", help="print the packages as JSON")
    models.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="compare the global SHAP values of two versions' explainability reports, each "
        "a version of [register] model_package_group (3) or GROUP/VERSION (ltr-ranking/3)",
    )

    promote = commands.add_parser(
        "promote",
        help="compile the plan into a SageMaker Pipeline, upload the code, upsert and start it",
    )
    _add_config_options(promote)
    promote.add_argument(
        "--dry-run",
        action="store_true",
        help="run preflight, write the definition JSON and print the steps; upload nothing",
    )
    promote.add_argument(
        "--wait", action="store_true", help="follow the execution's steps until it ends"
    )
    promote.add_argument(
        "--parameter",
        dest="parameters",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline parameter of this execution, e.g. --parameter Threshold=0.35",
    )
    promote.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="where to write the definition JSON (default: <workspace>/cloud/<pipeline>.json)",
    )

    tuning = commands.add_parser("tuning", help="show the training jobs of a tuning job")
    tuning_commands = tuning.add_subparsers(dest="tuning_command", required=True)
    tuning_show = tuning_commands.add_parser(
        "show", help="print a tuning job's training jobs: values, objective, status, duration"
    )
    _add_config_options(tuning_show)
    tuning_show.add_argument(
        "name", nargs="?", help="the tuning job (default: the one that ran last)"
    )
    tuning_show.add_argument("--json", action="store_true", help="print the table as JSON")
    _add_tracking_commands(commands)
    return parser


def command_promote(args: argparse.Namespace, console: Console) -> int:
    config = _load(args)
    _check_dataset(config)
    return _promote(args, config, console)


def _parameters(values: list[str]) -> dict[str, str]:
    parameters = {}
    for item in values:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise HarnessError(
                f"--parameter {item}: expected NAME=VALUE. Fix: write e.g. "
                "--parameter Threshold=0.35."
            )
        parameters[name.strip()] = value
    return parameters


def _promote(args: argparse.Namespace, config, console: Console) -> int:  # type: ignore[no-untyped-def]
    from harness.cloud import promote

    def say(text: str) -> None:
        # soft_wrap keeps ARNs and S3 URIs in one piece when the output goes to a file.
        console.print(escape(text), soft_wrap=True, highlight=False)

    workspace = (config.project_root / config.pipeline.workspace).resolve()
    parameters = _parameters(args.parameters)
    plan, seconds = promote.prepare(config, workspace, parameters)
    say(f"preflight passed in {seconds:.2f} s: {len(plan.jobs)} steps checked")
    compiled, path = promote.compile_and_write(config, plan, workspace, args.output)
    from harness.report.pipeline import print_pipeline_summary

    expiry = config.section_values("cloud").get("cache_expire_after", "P30D")
    print_pipeline_summary(
        console, compiled, "off" if expiry == "off" else f"on, {expiry}", parameters
    )
    say(f"definition: {path}")
    if args.dry_run:
        say("dry run: nothing uploaded, no pipeline created")
        return 0

    import boto3.exceptions
    import botocore.exceptions

    aws_errors = (
        botocore.exceptions.BotoCoreError,
        botocore.exceptions.ClientError,
        boto3.exceptions.Boto3Error,
    )
    try:
        promote.upload(config, plan, workspace, say)
        pipeline_arn, execution_arn = promote.start(config, compiled, parameters)
    except aws_errors as error:
        raise promote.aws_failure(error) from None
    say(f"pipeline: {pipeline_arn}")
    say(f"execution: {execution_arn}")
    from harness.tracking.recorder import finish_promotion, record_promotion

    mlflow_run = record_promotion(config, plan, workspace, execution_arn, pipeline_arn, parameters)
    if mlflow_run is not None:
        say(f"recorded in MLflow as run {execution_arn.rsplit('/', 1)[-1]} (`harness runs`)")
    if not args.wait:
        say(
            "follow it in SageMaker Studio, with `harness promote --wait` next time, or with "
            f"`aws sagemaker describe-pipeline-execution --pipeline-execution-arn {execution_arn}`"
        )
        return 0
    try:
        status = promote.follow(config, execution_arn, say)
    except aws_errors as error:
        say(f"the execution started, but following it failed: {error}")
        say(
            "follow it in SageMaker Studio, or with `aws sagemaker describe-pipeline-execution "
            f"--pipeline-execution-arn {execution_arn}`"
        )
        return EXIT_JOB_FAILED
    say(f"execution {status}")
    if mlflow_run is not None:
        finish_promotion(config, workspace, mlflow_run, status)
    return 0 if status == "Succeeded" else EXIT_JOB_FAILED


def _add_tracking_commands(commands) -> None:  # type: ignore[no-untyped-def]
    runs = commands.add_parser("runs", help="list the runs recorded in MLflow, or compare two")
    _add_config_options(runs)
    runs.add_argument(
        "--limit", type=int, default=20, metavar="N", help="list the N newest runs (default: 20)"
    )
    runs.add_argument("--json", action="store_true", help="print the runs as JSON")
    runs_commands = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    compare = runs_commands.add_parser(
        "compare", help="print two runs' parameters and metrics side by side"
    )
    compare.add_argument(
        "runs", nargs=2, metavar="RUN", help="a run id or MLflow run id (or its prefix)"
    )
    # SUPPRESS keeps `harness runs --json compare A B` working: a False default here would
    # overwrite the True that `runs --json` set.
    compare.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the differences as JSON",
    )

    ui = commands.add_parser("ui", help="serve the MLflow UI of the workspace's runs on 127.0.0.1")
    _add_config_options(ui)
    ui.add_argument("--port", type=int, default=5000, help="TCP port on 127.0.0.1 (default: 5000)")


def command_tuning(args: argparse.Namespace, console: Console) -> int:
    from harness.local.pipeline import workspace_of
    from harness.local.tuning_job import read_trial_table
    from harness.report.summary import print_tuning_table

    table = read_trial_table(workspace_of(_load(args)), args.name)
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        print_tuning_table(console, table)
    return 0


def command_runs(args: argparse.Namespace, console: Console) -> int:
    import dataclasses

    from harness.local.pipeline import workspace_of
    from harness.report.runs import print_comparison, print_runs
    from harness.tracking import tracking_settings
    from harness.tracking.query import compare_runs, find_run, list_runs

    config = _load(args)
    settings = tracking_settings(config, workspace_of(config))
    _record_pending_runs(workspace_of(config))
    if args.runs_command == "compare":
        first, second = (find_run(settings, reference) for reference in args.runs)
        differences = compare_runs(first, second)
        if args.json:
            print(json.dumps([dataclasses.asdict(d) for d in differences], indent=2))
        else:
            print_comparison(console, first, second, differences)
        return 0
    if args.limit < 1:
        raise HarnessError(f"--limit {args.limit}: must be at least 1. Fix: pass --limit 20.")
    runs = list_runs(settings, args.limit)
    if args.json:
        print(json.dumps([dataclasses.asdict(run) for run in runs], indent=2))
    else:
        print_runs(console, runs, settings.tracking_uri)
    return 0


def command_ui(args: argparse.Namespace, console: Console) -> int:
    from harness.local.pipeline import workspace_of
    from harness.tracking import tracking_settings
    from harness.tracking.ui import UI_HOST, serve_ui

    if not 1 <= args.port <= 65535:
        raise HarnessError(f"--port {args.port}: not a TCP port. Fix: use 1 to 65535, e.g. 5000.")
    config = _load(args)
    settings = tracking_settings(config, workspace_of(config))
    _record_pending_runs(workspace_of(config))
    console.print(
        f"MLflow UI of {settings.tracking_uri} on http://{UI_HOST}:{args.port} (Ctrl-C to stop)"
    )
    return serve_ui(settings, args.port)


def _record_pending_runs(workspace: Path) -> None:
    """Record in MLflow the runs whose detached writer has not finished yet."""
    from harness.tracking.flush import flush_pending

    try:
        flush_pending(workspace)
    except TimeoutError as error:
        logger.warning("%s; the list may miss the latest runs", error)


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from harness.config import load_config

    return load_config(args.config, args.extra_files, args.overrides, use_local=args.use_local)


def _check_dataset(config) -> None:  # type: ignore[no-untyped-def]
    from harness.config import validate_dataset
    from harness.errors import ConfigError

    problems = validate_dataset(config)
    if problems:
        raise ConfigError(problems)


def command_run(args: argparse.Namespace, console: Console) -> int:
    from harness.local.pipeline import LocalRunner, new_run_id, workspace_of
    from harness.plan.build import build_plan
    from harness.report.summary import print_run_summary

    _apply_profile(args)
    config = _load(args)
    _check_dataset(config)
    if config.session.target == "cloud":
        ignored = [
            flag
            for flag, used in (("--no-cache", not args.use_cache), ("--from", args.rerun_from))
            if used
        ]
        if ignored:
            raise HarnessError(
                f"{' and '.join(ignored)}: the local target's options, and [session] target = "
                "cloud promotes to SageMaker, whose step cache [cloud] cache_expire_after sets. "
                "Fix: leave them out, or run locally with --set session.target=local."
            )
        console.print(escape("[session] target = cloud: promoting the pipeline to SageMaker"))
        args.dry_run, args.wait, args.parameters, args.output = False, False, [], None
        return _promote(args, config, console)
    from harness.check import preflight

    preflight(config, workspace_of(config))
    plan = build_plan(config, new_run_id())
    planned_steps = [job.step for job in plan.jobs]
    if args.rerun_from is not None and args.rerun_from not in planned_steps:
        import difflib

        close = difflib.get_close_matches(args.rerun_from, planned_steps, n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        raise HarnessError(
            f"--from {args.rerun_from}: not a step of this run. "
            f"Fix: {hint}use one of {', '.join(planned_steps)}."
        )
    events = ConsoleEvents(console, output=args.output)
    console.print(
        f"[bold]{plan.pipeline}[/bold] run {plan.run_id}: "
        f"{', '.join(job.step for job in plan.jobs)} (local target)"
    )
    runner = LocalRunner(config, plan, events, use_cache=args.use_cache, rerun_from=args.rerun_from)
    record = runner.run()
    console.print()
    print_run_summary(console, record)
    if getattr(args, "profile", None):
        from harness.report.profile import print_step_time

        print_step_time(console, record, workspace_of(config))
    if record.failed:
        failed = [s for s in record.steps if s.status in ("Failed", "Stopped")]
        for outcome in failed:
            console.print(
                f"[bold red]{outcome.step} ({outcome.name}) {outcome.status.lower()}:[/bold red] "
                f"{escape(outcome.failure_reason)}"
            )
            if outcome.log_path:
                console.print(f"  full log: {outcome.log_path}")
        return EXIT_JOB_FAILED
    return 0


class ConsoleEvents:
    """Print the run's progress: step starts and ends, and each job's output lines."""

    def __init__(self, console: Console, output: str) -> None:
        self.console = console
        self.output = output  # progress | logs | quiet
        self._metric_patterns: dict[str, list[re.Pattern[str]]] = {}

    def _is_metric_line(self, job, line: str) -> bool:  # type: ignore[no-untyped-def]
        if job.name not in self._metric_patterns:
            # A tuning job's request carries the algorithm in its TrainingJobDefinition.
            request = job.request.get("TrainingJobDefinition", job.request)
            definitions = request.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])
            self._metric_patterns[job.name] = [re.compile(d["Regex"]) for d in definitions]
        return any(pattern.search(line) for pattern in self._metric_patterns[job.name])

    def step_started(self, job) -> None:  # type: ignore[no-untyped-def]
        self.console.print(f"[bold cyan]>[/bold cyan] {job.step}: {job.name} started")

    def job_line(self, job, host: str, line: str) -> None:  # type: ignore[no-untyped-def]
        if self.output == "logs" or (self.output == "progress" and self._is_metric_line(job, line)):
            # soft_wrap keeps long paths in one piece when the output goes to a file.
            self.console.print(
                f"[dim]{job.step} {host} |[/dim] {escape(line)}", highlight=False, soft_wrap=True
            )

    def step_finished(self, job, outcome) -> None:  # type: ignore[no-untyped-def]
        from harness.report.summary import STATUS_STYLES

        style = STATUS_STYLES.get(outcome.status, "")
        if outcome.cached:
            self.console.print(f"{outcome.step}: {outcome.name} [blue]from the cache[/blue]")
            return
        text = f"{outcome.step}: {outcome.name} [{style}]{outcome.status.lower()}[/{style}]"
        if outcome.status != "Skipped":
            text += f" in {outcome.duration:.1f} s"
        if outcome.detail:
            text += f" ({escape(outcome.detail)})"
        self.console.print(text)
        if outcome.status in ("Failed", "Stopped"):
            self.console.print(f"  [red]reason:[/red] {escape(outcome.failure_reason)}")
            if outcome.log_tail:
                self.console.print("  last lines of the log:")
                for line in outcome.log_tail:
                    self.console.print(f"    {escape(line)}", highlight=False)

    def message(self, text: str) -> None:
        self.console.print(f"[dim]{escape(text)}[/dim]", soft_wrap=True)


def command_config(args: argparse.Namespace, console: Console) -> int:
    from harness.config.show import render_config

    config = _load(args)
    if args.config_command == "validate":
        _check_dataset(config)
        console.print(f"Configuration is valid ({', '.join(config.sources)}).")
        return 0
    # Plain print: the output is INI text meant to be copied or piped.
    print(render_config(config, with_origin=args.origin), end="")
    return 0


def command_check(args: argparse.Namespace, console: Console) -> int:
    from harness.check import CheckError, check_steps

    config = _load(args)
    _check_dataset(config)
    console.print(f"configuration: valid ({', '.join(config.sources)})")
    problems = check_steps(config)
    if problems:
        raise CheckError(problems)
    console.print(f"step contracts: {', '.join(config.pipeline.steps)} pass")
    if args.no_run:
        return 0
    fixtures = _fixtures_file(args, "--no-run")
    args.extra_files = [*args.extra_files, fixtures]
    args.use_cache, args.rerun_from = True, None
    console.print(
        f"fixtures run ({fixtures.name}); steps whose inputs did not change come from the cache"
    )
    return command_run(args, console)


def command_watch(args: argparse.Namespace, console: Console) -> int:
    from harness.check import preflight
    from harness.config import load_config
    from harness.local.pipeline import LocalRunner, new_run_id, workspace_of
    from harness.plan.build import build_plan
    from harness.watch import Watcher

    extra_files = list(args.extra_files)
    if not args.full_data:
        extra_files.append(_fixtures_file(args, "--full-data"))
    if args.profile:
        # The override goes after every file, so it is checked against the watched files.
        args.extra_files, base_files = extra_files, args.extra_files
        _apply_profile(args)
        args.extra_files = base_files

    def load():  # type: ignore[no-untyped-def]
        config = load_config(args.config, extra_files, args.overrides, use_local=args.use_local)
        _check_dataset(config)
        return config

    events = ConsoleEvents(console, output=args.output)

    def run(config, aws, launcher):  # type: ignore[no-untyped-def]
        preflight(config, workspace_of(config))
        plan = build_plan(config, new_run_id())
        record = LocalRunner(config, plan, events, aws=aws, launcher=launcher).run()
        if args.profile:
            from harness.report.profile import print_step_time

            print_step_time(console, record, workspace_of(config))
        if record.failed:
            for outcome in record.steps:
                if outcome.status in ("Failed", "Stopped") and outcome.log_path:
                    console.print(f"  full log: {outcome.log_path}", soft_wrap=True)
        return record

    launcher = None
    if not args.cold:
        from harness.local.warm import WarmPool

        launcher = WarmPool()
    console.print(
        "[bold]harness watch[/bold]: runs the pipeline, then reruns what each save affects "
        "(Ctrl-C to stop)"
    )
    Watcher(console, load, run, launcher).loop()
    return 0


def command_models(args: argparse.Namespace, console: Console) -> int:
    from harness.local.embedded import EmbeddedAWS
    from harness.local.pipeline import workspace_of
    from harness.report.summary import print_models

    config = _load(args)
    workspace = workspace_of(config)
    if args.compare:
        return _compare_models(args, config, workspace, console)
    if not (workspace / "control-plane.jsonl").exists():
        console.print(
            f"No model packages yet: the workspace {workspace} has no runs. Run `harness run` first."
        )
        return 0
    packages = []
    with EmbeddedAWS(workspace, config.session.region) as aws:
        groups = aws.sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"]
        for group in groups:
            listing = aws.sagemaker.list_model_packages(
                ModelPackageGroupName=group["ModelPackageGroupName"]
            )["ModelPackageSummaryList"]
            for summary in listing:
                package = aws.sagemaker.describe_model_package(
                    ModelPackageName=summary["ModelPackageArn"]
                )
                # boto3's HTTP details and moto's placeholder user profile say nothing here.
                package.pop("ResponseMetadata", None)
                package.pop("CreatedBy", None)
                package["ModelPackageGroupName"] = group["ModelPackageGroupName"]
                package["run_id"] = package.get("CustomerMetadataProperties", {}).get("run_id", "")
                statistics = (
                    package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {})
                )
                if statistics.get("S3Uri"):
                    try:
                        report = json.loads(aws.get_bytes(statistics["S3Uri"]))
                        package["ndcg_at_10"] = report["ranking_metrics"]["ndcg_at_10"]["value"]
                    except Exception as error:  # noqa: BLE001 - one unreadable report is not fatal
                        logger.warning("cannot read %s: %s", statistics["S3Uri"], error)
                packages.append(package)
    packages.sort(key=lambda p: (p["ModelPackageGroupName"], p.get("ModelPackageVersion", 0)))
    if args.json:
        print(json.dumps(packages, indent=2, default=str))
    else:
        print_models(console, packages)
    return 0


def _compare_models(  # type: ignore[no-untyped-def]
    args: argparse.Namespace, config, workspace: Path, console: Console
) -> int:
    """Print the global SHAP values of two model package versions side by side."""
    from harness.local.embedded import EmbeddedAWS
    from harness.local.registry import parse_version, read_explainability_report
    from harness.report.explanations import ExplainedVersion, compare_versions, print_comparison

    default_group = config.section_values("register").get("model_package_group")
    versions = [parse_version(text, default_group) for text in args.compare]
    if not (workspace / "control-plane.jsonl").exists():
        raise HarnessError(
            f"--compare {' '.join(args.compare)}: the workspace {workspace} has no model "
            "packages yet. Fix: run `harness run` to register a model first."
        )
    explained = []
    with EmbeddedAWS(workspace, config.session.region) as aws:
        for group, version in versions:
            analysis, uri = read_explainability_report(aws, group, version)
            explained.append(ExplainedVersion(f"{group}/{version}", uri, analysis))
    comparison = compare_versions(*explained)
    if args.json:
        print(json.dumps(comparison.to_json(), indent=2))
    else:
        print_comparison(console, comparison)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.verbose:
        # Their debug lines (every HTTP request, every file-watch poll) bury harness's own.
        for name in ("botocore", "boto3", "s3transfer", "urllib3", "watchfiles", "werkzeug"):
            logging.getLogger(name).setLevel(logging.WARNING)
    console = Console(highlight=False)
    # `kill` (SIGTERM) ends a run the way Ctrl-C does: job processes ended, records saved.
    signal.signal(signal.SIGTERM, _interrupt)
    handlers = {
        "run": command_run,
        "check": command_check,
        "watch": command_watch,
        "config": command_config,
        "models": command_models,
        "tuning": command_tuning,
        "promote": command_promote,
        "runs": command_runs,
        "ui": command_ui,
    }
    try:
        return handlers[args.command](args, console)
    except HarnessError as error:
        console.print(f"[bold red]error:[/bold red] {escape(str(error))}", soft_wrap=True)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader of the output went away (`| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        console.print(
            "[yellow]Interrupted.[/yellow] Finished steps keep their outputs in the workspace."
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

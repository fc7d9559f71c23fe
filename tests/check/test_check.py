"""Step contract checks on a copy of the repository's config.ini, steps/ and fixtures/.

Each test breaks one thing in the copy and expects exactly the problem that names it.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from harness.check import (
    CheckProblem,
    HelpError,
    check_container_paths,
    check_entry_point,
    check_steps,
    parse_help_options,
    read_accepted_options,
)
from harness.cli import main
from harness.config import Config, load_config
from harness.plan.build import build_plan

REPO = Path(__file__).resolve().parents[2]

TRAIN_OPTIONS = (
    "--batch-size, --batch_size, --dropout, --epochs, --hidden-units, --hidden_units, "
    "--intra-op-parallelism-threads, --intra_op_parallelism_threads, --learning-rate, "
    "--learning_rate, --loss, --profile-steps, --profile_steps, --seed, --steps-per-execution, "
    "--steps_per_execution"
)
EVALUATE_OPTIONS = (
    "--output-dir, --predictions-dir, --relevance-threshold, --schema-dir, --seed, --validation-dir"
)
EVALUATION_KEYS = (
    "ranking_metrics, baselines, queries, queries_without_relevant_documents, relevance_threshold"
)
HARNESS_IMPORT_FIX = (
    "remove the import and pass what the step needs as an argument, hyperparameter or "
    "environment variable"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Copy the project without sample_data/, and work in the copy as `harness check` does."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copy(REPO / "config.ini", tmp_path / "config.ini")
    shutil.copytree(REPO / "steps", tmp_path / "steps", ignore=ignore)
    shutil.copytree(REPO / "fixtures", tmp_path / "fixtures", ignore=ignore)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(project: Path, *overrides: str) -> Config:
    return load_config(Path("config.ini"), overrides=overrides, use_local=False)


def check(project: Path, *overrides: str) -> list[CheckProblem]:
    return check_steps(load(project, *overrides))


def append(path: Path, text: str) -> int:
    """Append ``text`` as one line to ``path`` and return its line number."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, text]) + "\n")
    return len(lines) + 1


def line_of(path: Path, text: str) -> int:
    """Return the number of the first line of ``path`` that contains ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not found in {path}")


def write_script(folder: Path, source: str) -> Path:
    script = folder / "script.py"
    script.write_text(textwrap.dedent(source))
    return script


def test_repository_has_no_problems(project: Path) -> None:
    # The copy has no sample_data/mslr, the configured dataset, which the checks never read.
    assert check(project) == []


def test_fixtures_config_has_no_problems(project: Path) -> None:
    config = load_config(Path("config.ini"), [Path("fixtures/fixtures.ini")], use_local=False)
    assert check_steps(config) == []


def test_unselected_steps_not_checked(project: Path) -> None:
    append(project / "steps" / "evaluate" / "evaluate.py", "import harness")
    assert check(project, "pipeline.steps=prepare, train") == []


def test_problem_text() -> None:
    problem = CheckProblem("train", "steps/train/train.py", 12, "it failed", "do this")
    assert str(problem) == "steps/train/train.py:12 [train] it failed. Fix: do this."
    without_line = CheckProblem("train", "--set #1", None, "it failed.", "do this.")
    assert str(without_line) == "--set #1 [train] it failed. Fix: do this."


# Check 1: entry point and syntax.


def test_syntax_error_with_line(project: Path) -> None:
    line = append(project / "steps" / "train" / "train.py", "def broken(:")
    assert check(project) == [
        CheckProblem(
            "train",
            "steps/train/train.py",
            line,
            "syntax error: invalid syntax",
            "correct the syntax, because the job fails on import before it parses any argument",
        )
    ]


def test_entry_point_not_a_file(project: Path) -> None:
    config = load(project)
    step = dataclasses.replace(config.steps["predict"], entry_point="steps/predict")
    line = line_of(project / "config.ini", "entry_point = steps/predict/predict.py")
    assert check_entry_point(config, step) == [
        CheckProblem(
            "predict",
            "config.ini",
            line,
            f'entry point "steps/predict" not found: {project / "steps" / "predict"} is not a file',
            "create the script or correct [predict] entry_point",
        )
    ]


def test_entry_point_outside_steps(project: Path) -> None:
    (project / "predict.py").write_text("")
    config = load(project)
    step = dataclasses.replace(config.steps["predict"], entry_point="predict.py")
    problems = check_entry_point(config, step)
    assert [p.message for p in problems] == [
        'entry point "predict.py" is outside the steps/ folder, which harness ships as the '
        "job's code"
    ]


# Check 2: imports.


def test_step_importing_harness(project: Path) -> None:
    line = append(project / "steps" / "predict" / "predict.py", "from harness.config import Config")
    assert check(project) == [
        CheckProblem(
            "predict",
            "steps/predict/predict.py",
            line,
            'imports "harness.config": step code runs in a SageMaker container, where harness '
            "is not installed",
            HARNESS_IMPORT_FIX,
        )
    ]


def test_shared_harness_import_lists_steps(project: Path) -> None:
    line = append(project / "steps" / "common" / "contract.py", "import harness")
    assert check(project) == [
        CheckProblem(
            "prepare, train, predict, evaluate, explain, package",
            "steps/common/contract.py",
            line,
            'imports "harness": step code runs in a SageMaker container, where harness is not '
            "installed",
            HARNESS_IMPORT_FIX,
        )
    ]


def test_step_importing_another_step(project: Path) -> None:
    line = append(project / "steps" / "predict" / "predict.py", "from evaluate import evaluate")
    assert check(project) == [
        CheckProblem(
            "predict",
            "steps/predict/predict.py",
            line,
            'imports "evaluate" from steps/evaluate/, the folder of another step',
            "move the shared code to steps/common/ and import it from there",
        )
    ]


def test_module_of_own_folder_allowed(project: Path) -> None:
    # package.py may import inference.py beside it, and a module there named like another
    # step's folder shadows that folder.
    package = project / "steps" / "package"
    (package / "train.py").write_text("")
    append(package / "package.py", "import inference, train")
    assert check(project) == []


# Check 3: arguments and hyperparameters.


def test_unknown_hyperparameter(project: Path) -> None:
    assert check(project, "train.hyperparameters.epochz=3") == [
        CheckProblem(
            "train",
            "--set #1",
            None,
            'hyperparameter "epochz" in [train.hyperparameters]: steps/train/train.py does not '
            "accept --epochz",
            f'use "epochs" (the script accepts {TRAIN_OPTIONS})',
        )
    ]


def test_abbreviated_hyperparameter(project: Path) -> None:
    assert check(project, "train.hyperparameters.epoch=3") == [
        CheckProblem(
            "train",
            "--set #1",
            None,
            'hyperparameter "epoch" in [train.hyperparameters]: steps/train/train.py accepts '
            "--epoch only as an abbreviation of --epochs",
            'use the full name "epochs"',
        )
    ]


def test_framework_hyperparameters_skipped(project: Path) -> None:
    config = load(project, "pipeline.dataset=fixtures/letor")
    plan = build_plan(config, "check")
    hyperparameters = plan.job("train").request["HyperParameters"]
    assert "sagemaker_program" in hyperparameters
    assert check_steps(config) == []


def test_unknown_processing_argument(project: Path) -> None:
    (project / "extra.ini").write_text("[evaluate.arguments]\nrelevance_threshold = 1\n")
    config = load_config(Path("config.ini"), [Path("extra.ini")], use_local=False)
    assert check_steps(config) == [
        CheckProblem(
            "evaluate",
            "extra.ini",
            2,
            'argument "relevance_threshold" in [evaluate.arguments]: steps/evaluate/evaluate.py '
            "does not accept --relevance_threshold",
            f'use "relevance-threshold" (the script accepts {EVALUATE_OPTIONS})',
        )
    ]


def test_option_harness_passes_missing(project: Path) -> None:
    script = project / "steps" / "predict" / "predict.py"
    script.write_text(script.read_text().replace('"--model-dir"', '"--model-path"'))
    problems = check(project)
    assert len(problems) == 1
    assert problems[0].file == "harness/plan/build.py"
    assert problems[0].line is None
    assert problems[0].message == (
        "harness passes --model-dir, but steps/predict/predict.py does not accept --model-dir"
    )
    assert (
        problems[0].fix == "add --model-dir to the arguments that steps/predict/predict.py parses"
    )


def test_script_without_argparse(project: Path) -> None:
    (project / "steps" / "package" / "package.py").write_text('print("packaging")\n')
    assert check(project) == [
        CheckProblem(
            "package",
            "steps/package/package.py",
            None,
            "`package.py --help` printed no argparse options, so harness cannot tell which "
            "arguments the script accepts",
            "parse the arguments with argparse, as the other steps do",
        )
    ]


def test_help_failure_shows_error(tmp_path: Path) -> None:
    script = write_script(tmp_path, 'raise RuntimeError("no model")\n')
    with pytest.raises(HelpError) as raised:
        read_accepted_options(script, tmp_path)
    assert raised.value.message.startswith("`script.py --help` failed with exit status 1: ")
    assert "RuntimeError: no model" in raised.value.message


def test_help_timeout(tmp_path: Path) -> None:
    script = write_script(tmp_path, "import time\ntime.sleep(30)\n")
    with pytest.raises(HelpError) as raised:
        read_accepted_options(script, tmp_path, timeout=1)
    assert raised.value.message == (
        "`script.py --help` did not finish within 1 s, so harness cannot read the options it "
        "accepts"
    )


def test_help_blocks_network(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """\
        import socket
        socket.create_connection(("127.0.0.1", 9), timeout=1)
        """,
    )
    with pytest.raises(HelpError) as raised:
        read_accepted_options(script, tmp_path)
    assert "network access is blocked" in raised.value.message


def test_help_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    script = write_script(
        tmp_path,
        """\
        import argparse, os, sys
        base = os.environ["SAGEMAKER_BASE_DIR"]
        assert os.path.isdir(base) and not os.listdir(base), base
        assert "SM_MODEL_DIR" not in os.environ
        assert os.getcwd() == sys.argv[0].rsplit(os.sep, 1)[0]
        parser = argparse.ArgumentParser()
        parser.add_argument("--model-dir")
        parser.parse_args()
        """,
    )
    assert read_accepted_options(script, tmp_path) == {"-h", "--help", "--model-dir"}


def test_parse_help_options() -> None:
    help_text = textwrap.dedent(
        """\
        usage: train.py [-h] [--epochs EPOCHS] [--batch_size BATCH_SIZE]

        options:
          -h, --help            show this help message and exit
          --epochs EPOCHS       number of passes; see
                                --not-an-option in the help text
          --batch_size BATCH_SIZE, --batch-size BATCH_SIZE
                                queries per batch
          --verbose
        """
    )
    assert parse_help_options(help_text) == {
        "-h",
        "--help",
        "--epochs",
        "--batch_size",
        "--batch-size",
        "--verbose",
    }
    assert parse_help_options("hello\n  --epochs EPOCHS\n") == frozenset()


def test_help_uses_this_interpreter(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        f"""\
        import argparse, sys
        assert sys.executable == {sys.executable!r}, sys.executable
        argparse.ArgumentParser().parse_args()
        """,
    )
    assert read_accepted_options(script, tmp_path) == {"-h", "--help"}


# Check 4: container paths.


def test_path_argument_outside_outputs(project: Path) -> None:
    value = "/opt/ml/processing/output/elsewhere"
    problems = check(project, f"predict.arguments.output-dir={value}")
    assert problems == [
        CheckProblem(
            "predict",
            "--set #1",
            None,
            f'--output-dir "{value}" is not at, under or above any input or output LocalPath, '
            "so SageMaker puts no input there and uploads nothing written there",
            "use a path under one of /opt/ml/processing/input/model, "
            "/opt/ml/processing/input/test, /opt/ml/processing/input/code, "
            "/opt/ml/processing/output/predictions",
        )
    ]


def test_local_paths_outside_and_shared(project: Path) -> None:
    config = load(project, "pipeline.dataset=fixtures/letor")
    job = copy.deepcopy(build_plan(config, "check").job("package"))
    inputs = job.request["ProcessingInputs"]
    inputs[0]["S3Input"]["LocalPath"] = "/tmp/model"
    inputs[1]["S3Input"]["LocalPath"] = "/opt/ml/processing/input/code"
    job.request["AppSpecification"]["ContainerArguments"] = []
    messages = [p.message for p in check_container_paths(config, config.steps["package"], job)]
    assert messages == [
        'input model has LocalPath "/tmp/model", outside /opt/ml/processing/',
        'input code and input schema share the LocalPath "/opt/ml/processing/input/code"',
    ]


def test_path_default_differs(project: Path) -> None:
    script = project / "steps" / "predict" / "predict.py"
    text = script.read_text()
    script.write_text(text.replace('"/opt/ml/processing/output/predictions"', '"/opt/ml/out"'))
    assert check(project) == [
        CheckProblem(
            "predict",
            "steps/predict/predict.py",
            line_of(script, '"/opt/ml/out"'),
            '--output-dir defaults to "/opt/ml/out", but harness passes '
            '"/opt/ml/processing/output/predictions"',
            'set the default of --output-dir to "/opt/ml/processing/output/predictions", the '
            "container path",
        )
    ]


# Check 5: metric definitions and the condition's JSON path.


def test_metric_regex_matches_nothing(project: Path) -> None:
    config_line = line_of(project / "config.ini", "validation:ndcg@10 = ")
    config_text = (project / "config.ini").read_text()
    (project / "config.ini").write_text(
        config_text.replace(
            "validation:ndcg@10 = validation:ndcg@10=", "validation:ndcg@10 = validation_ndcg@10="
        )
    )
    assert check(project) == [
        CheckProblem(
            "train",
            "config.ini",
            config_line,
            'metric "validation:ndcg@10" in [train.metrics]: the regex '
            '"validation_ndcg@10=([0-9.eE+-]+)" matches no line that steps/train/train.py '
            'prints, such as "epoch=3 train:loss=0.8125 validation:ndcg@10=0.8125 '
            'validation:best_ndcg@10=0.8125"',
            'match the printed line and capture the number, e.g. "validation:ndcg@10=([0-9.eE+-]+)"',
        )
    ]


def test_metric_regex_captures_no_number(project: Path) -> None:
    problems = check(project, "train.metrics.train:loss=train:(loss)=")
    assert [p.message for p in problems] == [
        'metric "train:loss" in [train.metrics]: the regex "train:(loss)=" captures "loss" '
        'from "epoch=3 train:loss=0.8125 validation:ndcg@10=0.8125 '
        'validation:best_ndcg@10=0.8125", which is not a number'
    ]
    assert problems[0].file == "--set #1"


def test_metric_format_change_in_step(project: Path) -> None:
    # The check reads the print format from the step, so a renamed key in the step's output
    # fails the configured regex.
    script = project / "steps" / "train" / "train.py"
    script.write_text(script.read_text().replace("train:loss={train_loss", "loss={train_loss"))
    problems = check(project)
    assert [(p.step, p.file) for p in problems] == [("train", "config.ini")]
    assert problems[0].message.startswith('metric "train:loss" in [train.metrics]: the regex')


def test_json_path_unknown_top_level_key(project: Path) -> None:
    assert check(project, "condition.json_path=metrics.ndcg_at_10.value") == [
        CheckProblem(
            "condition",
            "--set #1",
            None,
            'json_path "metrics.ndcg_at_10.value" starts with "metrics", a key that '
            "steps/evaluate/evaluate.py does not write to evaluation.json",
            f"start the path with one of {EVALUATION_KEYS}",
        )
    ]


def test_json_path_unknown_metric(project: Path) -> None:
    problems = check(project, "condition.json_path=ranking_metrics.ndcg10.value")
    assert [p.message for p in problems] == [
        'json_path "ranking_metrics.ndcg10.value" names no metric of ranking_metrics ("ndcg10")'
    ]
    assert problems[0].fix == (
        'use one of ndcg_at_1, ndcg_at_5, ndcg_at_10, mrr, map, e.g. "ranking_metrics.ndcg_at_10.value"'
    )


def test_json_path_ends_at_object(project: Path) -> None:
    problems = check(project, "condition.json_path=ranking_metrics.ndcg_at_10")
    assert [p.fix for p in problems] == ['use "ranking_metrics.ndcg_at_10.value"']


def test_json_path_other_top_level_key(project: Path) -> None:
    assert check(project, "condition.json_path=baselines.random.ndcg_at_10.value") == []


def test_evaluation_keys_unreadable(project: Path) -> None:
    script = project / "steps" / "evaluate" / "evaluate.py"
    text = script.read_text().replace("json.dump(evaluation,", "json.dump(dict(evaluation),")
    script.write_text(text)
    line = line_of(project / "config.ini", "json_path = ")
    assert check(project) == [
        CheckProblem(
            "condition",
            "config.ini",
            line,
            'cannot check json_path "ranking_metrics.ndcg_at_10.value": '
            "steps/evaluate/evaluate.py passes no dict literal to json.dump, so the keys of "
            "evaluation.json are unknown",
            "build evaluation.json as a dict literal assigned to a name passed to json.dump",
        )
    ]


def test_check_reports_missing_dataset(project: Path, capsys: pytest.CaptureFixture) -> None:
    # The copy has no sample_data/, so config.ini's dataset folder does not exist.
    code = main(["check", "--no-run"])
    output = capsys.readouterr()
    assert code == 2
    assert "dataset folder not found" in output.out + output.err
    assert "step contracts" not in output.out


def test_check_passes_existing_dataset(project: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["check", "--no-run", "--set", "pipeline.dataset=fixtures/letor"])
    output = capsys.readouterr()
    assert code == 0, output
    assert "step contracts" in output.out

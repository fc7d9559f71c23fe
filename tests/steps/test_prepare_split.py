"""The query split of the prepare step, imported from the script without running Spark."""

from __future__ import annotations

import importlib.util

import pytest

from common.contract import StepError
from tests.steps.steprunner import STEPS


@pytest.fixture(scope="module")
def prepare():
    spec = importlib.util.spec_from_file_location("prepare_step", STEPS / "prepare" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_sizes_round_fractions(prepare):
    assignment, test_qids = prepare.split_queries(range(100, 186), 0.2, 0.2, seed=42)
    splits = list(assignment.values())
    assert (splits.count("train"), splits.count("validation"), splits.count("test")) == (52, 17, 17)
    assert sorted(test_qids) == sorted(q for q, split in assignment.items() if split == "test")


def test_split_is_seeded(prepare):
    first, _ = prepare.split_queries(range(30), 0.2, 0.2, seed=7)
    again, _ = prepare.split_queries(reversed(range(30)), 0.2, 0.2, seed=7)
    other, _ = prepare.split_queries(range(30), 0.2, 0.2, seed=8)
    assert first == again
    assert first != other


def test_split_gives_every_split_a_query(prepare):
    assignment, _ = prepare.split_queries([1, 2, 3], 0.01, 0.01, seed=0)
    assert sorted(assignment.values()) == ["test", "train", "validation"]


def test_split_rejects_too_few_queries(prepare):
    with pytest.raises(StepError, match="too few queries to split: found 2"):
        prepare.split_queries([1, 2], 0.2, 0.2, seed=0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--test-fraction", "0"], "--test-fraction must be between 0 and 1, got 0.0"),
        (["--validation-fraction", "0.5", "--test-fraction", "0.5"], "must be below 1"),
        (["--test-shards", "0"], "--test-shards must be at least 1, got 0"),
        (["--seed", "x"], "invalid arguments for prepare.py"),
    ],
)
def test_invalid_arguments_raise(prepare, arguments, message):
    with pytest.raises(StepError, match=message):
        prepare.parse_arguments(arguments)

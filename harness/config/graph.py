"""The pipeline graph: its steps in run order and what each step reads from which."""

from __future__ import annotations

from collections.abc import Mapping

from harness.config.instance_types import InstanceKind

# The pipeline graph in run order. pipeline.steps selects steps but cannot reorder them.
STEP_ORDER: tuple[str, ...] = (
    "prepare",
    "train",
    "predict",
    "evaluate",
    "explain",
    "condition",
    "register",
    "package",
)

# Steps that run as SageMaker jobs, with the kind of job (which decides instance types and limits).
JOB_KINDS: Mapping[str, InstanceKind] = {
    "prepare": "processing",
    "train": "training",
    "predict": "processing",
    "evaluate": "processing",
    "explain": "processing",
    "package": "processing",
}

# Inputs of each step, as {input: step that writes it}, from docs/step-contract.md.
# NOTE: no key can point a step at an input from elsewhere (such as an earlier run), so
# validation requires every upstream step of a selected step to be selected too.
STEP_INPUTS: Mapping[str, Mapping[str, str]] = {
    "prepare": {},
    "train": {"train": "prepare", "validation": "prepare"},
    "predict": {"model": "train", "test": "prepare"},
    "evaluate": {"predictions": "predict", "validation": "prepare"},
    "explain": {"model": "train", "test": "prepare", "schema": "prepare"},
    "condition": {"evaluation": "evaluate"},
    "register": {"model": "train", "model metrics": "evaluate"},
    "package": {"model": "train", "schema": "prepare"},
}

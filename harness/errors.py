"""Errors that harness reports to the user.

The CLI prints ``str(error)`` of a HarnessError with no traceback and exits with status 2.
Any other exception is a bug in harness and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.config.model import Problem


class HarnessError(Exception):
    """An error caused by the user's input or environment, whose message gives the fix."""


class ConfigError(HarnessError):
    """Invalid configuration. ``problems`` lists every problem found, not only the first."""

    problems: list[Problem]

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(format_problems(self.problems))

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickles its message by default, so rebuild from the problems instead.
        return (type(self), (self.problems,))


class TuningError(HarnessError):
    """A hyperparameter tuning job cannot start or resume, for the reason in the message."""


def format_problems(problems: Sequence[Problem]) -> str:
    """Format a headline with the problem count, then one problem a line."""
    count = len(problems)
    noun = "problem" if count == 1 else "problems"
    lines = [f"Configuration is invalid ({count} {noun}):"]
    lines.extend(f"  {problem}" for problem in problems)
    return "\n".join(lines)

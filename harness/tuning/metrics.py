"""Read metrics from a training job's log, as SageMaker does with MetricDefinitions.

Each metric definition is a name and a regex. SageMaker searches each line that the training
job writes to stdout or stderr with every regex and reads the metric's value from the first
capture group as a float. The tuning job's objective for a finished training job is the last
value of the objective metric in its log: the API's FinalHyperParameterTuningJobObjectiveMetric
"shows the latest objective metric emitted by a training job".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping


class MetricExtractor:
    """Match log lines against metric definitions (metric name -> regex with one group)."""

    def __init__(self, definitions: Mapping[str, str]) -> None:
        self._patterns = {name: re.compile(regex) for name, regex in definitions.items()}

    def feed(self, line: str) -> list[tuple[str, float]]:
        """Return the (metric, value) pairs found in ``line``, in definition order.

        Text with several lines is searched line by line. A capture that is not a number is
        skipped, as SageMaker records no value for it.
        """
        found: list[tuple[str, float]] = []
        for single_line in line.splitlines() or [line]:
            for name, pattern in self._patterns.items():
                match = pattern.search(single_line)
                if match is None:
                    continue
                try:
                    found.append((name, float(match.group(1))))
                except (IndexError, TypeError, ValueError):
                    continue
        return found


def extract_metrics(
    definitions: Mapping[str, str], lines: Iterable[str]
) -> Iterator[tuple[str, float]]:
    """Yield (metric, value) for each metric value in ``lines``, as the values appear."""
    extractor = MetricExtractor(definitions)
    for line in lines:
        yield from extractor.feed(line)


def missing_objective_reason(training_job_name: str, metric: str, regex: str) -> str:
    """Return the failure reason of a training job that never wrote the objective metric."""
    return (
        f'training job {training_job_name} never wrote the objective metric "{metric}": no '
        f"line of its log matched the regex {regex!r}. Print the metric in a form the regex "
        "matches (once per epoch for early stopping), or correct the regex in [train.metrics]"
    )

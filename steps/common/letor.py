"""Parse and validate LETOR (SVMlight ranking) text files.

One line is one document: `label qid:N 1:v 2:v ... # optional comment`. Features that a
line leaves out are 0.0, as in the sparse SVMlight format. Blank lines and lines that
contain only a comment are skipped.

Validation collects every problem instead of stopping at the first one, and reports per
file and kind of problem the number of lines and the first few line numbers (1-based).
This module needs only the standard library, so Spark's Python workers can import it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .contract import StepError

# Line numbers shown for each kind of problem in a file. The total count is always shown.
EXAMPLES_PER_PROBLEM = 5

MALFORMED = "malformed"
MISSING_QID = "missing_qid"
LABEL_RANGE = "label_range"
FEATURE_INDEX = "feature_index"
EMPTY_FILE = "empty_file"
PROBLEM_KINDS = (MALFORMED, MISSING_QID, LABEL_RANGE, FEATURE_INDEX, EMPTY_FILE)


class LetorError(StepError):
    """Invalid LETOR input. The message names each file, kind of problem and line numbers."""


@dataclass(frozen=True)
class LetorLine:
    """One parsed document line. `features` is dense: index 0 is feature 1."""

    label: int
    qid: int
    features: tuple[float, ...]


@dataclass
class ProblemSummary:
    """Lines of one file with one kind of problem: the count and the first few examples."""

    source: str
    kind: str
    count: int = 0
    # (line number, detail) pairs, in line order, at most EXAMPLES_PER_PROBLEM of them.
    examples: list[tuple[int, str]] = field(default_factory=list)

    def add(self, line_number: int, detail: str) -> None:
        self.count += 1
        self.examples.append((line_number, detail))
        self.examples.sort()
        del self.examples[EXAMPLES_PER_PROBLEM:]

    def merge(self, other: ProblemSummary) -> ProblemSummary:
        merged = ProblemSummary(self.source, self.kind, self.count + other.count)
        merged.examples = sorted(self.examples + other.examples)[:EXAMPLES_PER_PROBLEM]
        return merged


def parse_line(
    text: str, num_features: int, max_label: int
) -> tuple[LetorLine | None, list[tuple[str, str]]]:
    """Parse one line and return `(parsed line or None, [(problem kind, detail), ...])`.

    The parsed line is None for a blank or comment-only line and for a line with
    problems. A line reports at most one problem of each kind, the first one found.
    """
    content = text.split("#", 1)[0].strip()
    if not content:
        return None, []

    problems: dict[str, str] = {}
    tokens = content.split()

    label = _parse_label(tokens[0], max_label, problems)

    qid = None
    feature_tokens = tokens[1:]
    if len(tokens) > 1 and tokens[1].startswith("qid:"):
        feature_tokens = tokens[2:]
        qid_text = tokens[1][len("qid:") :]
        if qid_text.isdigit():
            qid = int(qid_text)
        else:
            problems.setdefault(MALFORMED, f"qid {qid_text!r} is not a non-negative integer")
    elif any(token.startswith("qid:") for token in tokens):
        problems.setdefault(MISSING_QID, "qid is not the second token")
    else:
        problems.setdefault(MISSING_QID, "no qid:N token")

    features = _parse_features(feature_tokens, num_features, problems)

    if problems or label is None or qid is None or features is None:
        return None, list(problems.items())
    return LetorLine(label=label, qid=qid, features=features), []


def _parse_label(token: str, max_label: int, problems: dict[str, str]) -> int | None:
    try:
        label = int(token)
    except ValueError:
        problems.setdefault(MALFORMED, f"label {token!r} is not an integer")
        return None
    if not 0 <= label <= max_label:
        problems.setdefault(LABEL_RANGE, f"label {label}")
        return None
    return label


def _parse_features(
    tokens: list[str], num_features: int, problems: dict[str, str]
) -> tuple[float, ...] | None:
    values = [0.0] * num_features
    seen: set[int] = set()
    valid = True
    for token in tokens:
        index_text, separator, value_text = token.partition(":")
        if not separator:
            problems.setdefault(MALFORMED, f"token {token!r} is not index:value")
            valid = False
            continue
        try:
            index = int(index_text)
            value = float(value_text)
        except ValueError:
            problems.setdefault(MALFORMED, f"token {token!r} is not index:value")
            valid = False
            continue
        if not math.isfinite(value):
            problems.setdefault(MALFORMED, f"feature {index} value {value_text!r} is not finite")
            valid = False
        elif not 1 <= index <= num_features:
            problems.setdefault(FEATURE_INDEX, f"feature {index}")
            valid = False
        elif index in seen:
            problems.setdefault(MALFORMED, f"feature {index} appears twice")
            valid = False
        else:
            seen.add(index)
            values[index - 1] = value
    return tuple(values) if valid else None


def describe_problem_kind(kind: str, num_features: int, max_label: int) -> str:
    """Return the heading for one kind of problem, with the argument that may fix it."""
    return {
        MALFORMED: "malformed tokens",
        MISSING_QID: "missing qid",
        LABEL_RANGE: f"label outside [0, {max_label}] (check --max-label)",
        FEATURE_INDEX: f"feature index outside [1, {num_features}] (check --num-features)",
        EMPTY_FILE: "no LETOR lines in the file",
    }[kind]


def format_problems(summaries: list[ProblemSummary], num_features: int, max_label: int) -> str:
    """Return one message listing each file's problems, sorted by file and kind."""
    kind_order = {kind: position for position, kind in enumerate(PROBLEM_KINDS)}
    summaries = sorted(summaries, key=lambda s: (s.source, kind_order[s.kind]))
    total = sum(summary.count for summary in summaries if summary.kind != EMPTY_FILE)
    files = len({summary.source for summary in summaries})
    parts = [f"invalid LETOR input: {total} invalid lines in {files} file(s)."]
    for summary in summaries:
        heading = describe_problem_kind(summary.kind, num_features, max_label)
        if summary.kind == EMPTY_FILE:
            parts.append(f"{summary.source}: {heading}.")
            continue
        examples = ", ".join(f"line {line} ({detail})" for line, detail in summary.examples)
        more = summary.count - len(summary.examples)
        suffix = f" and {more} more" if more else ""
        noun = "line" if summary.count == 1 else "lines"
        parts.append(f"{summary.source}: {heading} on {summary.count} {noun}: {examples}{suffix}.")
    return " ".join(parts)


def parse_lines(
    lines, source: str, num_features: int, max_label: int
) -> list[tuple[int, LetorLine]]:
    """Parse an iterable of text lines and return `[(line number, LetorLine), ...]`.

    Raises LetorError listing every problem, and for input without any LETOR line.
    """
    rows: list[tuple[int, LetorLine]] = []
    summaries: dict[str, ProblemSummary] = {}
    for line_number, text in enumerate(lines, start=1):
        parsed, problems = parse_line(text, num_features, max_label)
        for kind, detail in problems:
            summaries.setdefault(kind, ProblemSummary(source, kind)).add(line_number, detail)
        if parsed is not None:
            rows.append((line_number, parsed))
    if not rows and not summaries:
        summaries[EMPTY_FILE] = ProblemSummary(source, EMPTY_FILE)
    if summaries:
        raise LetorError(format_problems(list(summaries.values()), num_features, max_label))
    return rows


def parse_file(path: str, num_features: int, max_label: int) -> list[tuple[int, LetorLine]]:
    """Parse one LETOR file. See `parse_lines` for the return value and errors."""
    with open(path, encoding="utf-8") as file:
        return parse_lines(file, os.path.basename(path), num_features, max_label)


def list_input_files(input_dir: str) -> list[str]:
    """Return the files under `input_dir`, recursively, sorted by relative path.

    Names starting with `.` or `_` are skipped, as Spark and Hadoop skip them
    (`_SUCCESS`, `.crc` checksums). Raises LetorError when no file is left.
    """
    if not os.path.isdir(input_dir):
        raise LetorError(f"input folder {input_dir} not found")
    paths = []
    for root, dirs, files in os.walk(input_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in files:
            if not name.startswith((".", "_")):
                paths.append(os.path.join(root, name))
    if not paths:
        raise LetorError(f"no input files found under {input_dir}")
    return sorted(paths, key=lambda path: os.path.relpath(path, input_dir))

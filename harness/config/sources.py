"""Read configuration sources and layer them key by key, keeping each value's origin."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from iniconfig import IniConfig, ParseError, iscommentline

from harness.config.model import Origin, Problem

LOCAL_FILE_NAME = "config.local.ini"

# Stands in for ":" in key names while iniconfig parses, see _protect_colons().
_COLON_STAND_IN = "\ue000"

# Fixes for iniconfig's syntax error messages, matched by their start.
_PARSE_ERROR_FIXES: tuple[tuple[str, str], ...] = (
    ("no section header defined", "put a [section] header above the first setting"),
    ("duplicate section", "merge the two sections into one"),
    ("duplicate name", "keep one of the two lines"),
    ("empty section name", "name the section, e.g. [train]"),
    ("unexpected value continuation", "indent continuation lines below a key = value line"),
    ("unexpected line", "write each setting as key = value"),
)


@dataclass(frozen=True)
class RawValue:
    """A value as read, before validation, with where it was set."""

    value: str
    origin: Origin


@dataclass
class LayeredSources:
    """All sources merged: the last source wins key by key."""

    sources: list[str] = field(default_factory=list)
    values: dict[str, dict[str, RawValue]] = field(default_factory=dict)
    # Where each section was opened: a header line per file, or the first --set naming it.
    section_origins: dict[str, list[Origin]] = field(default_factory=dict)
    # Missing files, syntax errors and malformed --set options.
    problems: list[Problem] = field(default_factory=list)

    def set(self, section: str, key: str, value: RawValue) -> None:
        self.values.setdefault(section, {})[key] = value

    def open_section(self, section: str, origin: Origin) -> None:
        self.values.setdefault(section, {})
        self.section_origins.setdefault(section, []).append(origin)


def display_path(path: Path) -> str:
    """Return ``path`` as the user gave it, made relative to the cwd when it lies below it."""
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return os.path.normpath(path)


def layer_sources(
    base: Path,
    extra_files: Sequence[Path],
    overrides: Sequence[str],
    use_local: bool,
) -> LayeredSources:
    """Read the base file, config.local.ini, each extra file and each override, in that order."""
    layered = LayeredSources()
    _read_file(
        layered,
        base,
        missing_fix=(
            f"run harness from the project folder (this one is {Path.cwd()}), "
            "or name the base file with --config PATH"
        ),
    )

    local = base.parent / LOCAL_FILE_NAME
    if use_local and local.is_file():
        _read_file(layered, local, missing_fix="check the path of the local file")

    for extra in extra_files:
        _read_file(layered, Path(extra), missing_fix="check the path given to -c")

    for position, override in enumerate(overrides, start=1):
        origin = Origin(f"--set #{position}")
        layered.sources.append(origin.file)
        _apply_override(layered, override, origin)
    return layered


def _read_file(layered: LayeredSources, path: Path, missing_fix: str) -> None:
    display_name = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        layered.problems.append(
            Problem(display_name, None, None, None, None, "file not found", missing_fix)
        )
        return
    except UnicodeDecodeError as error:
        layered.problems.append(
            Problem(
                display_name, None, None, None, None, f"not UTF-8 text: {error}", "save it as UTF-8"
            )
        )
        return
    except OSError as error:
        layered.problems.append(
            Problem(
                display_name,
                None,
                None,
                None,
                None,
                f"cannot read the file: {error.strerror or error}",
                "make it a readable file",
            )
        )
        return

    layered.sources.append(display_name)
    unclosed = _unclosed_header_line(text)
    if unclosed is not None:
        layered.problems.append(
            Problem(
                display_name,
                unclosed,
                None,
                None,
                None,
                "syntax error: section header without a closing ]",
                "end the header with ], e.g. [train]",
            )
        )
        return
    try:
        ini = IniConfig(display_name, data=_protect_colons(text))
    except ParseError as error:
        message = _restore_colons(error.msg)
        fix = next(
            (fix for start, fix in _PARSE_ERROR_FIXES if message.startswith(start)),
            "correct the INI syntax",
        )
        # ParseError.lineno counts from 0.
        layered.problems.append(
            Problem(
                display_name, error.lineno + 1, None, None, None, f"syntax error: {message}", fix
            )
        )
        return

    for section in ini:
        layered.open_section(section.name, Origin(display_name, ini.lineof(section.name)))
        for key, value in section.items():
            origin = Origin(display_name, section.lineof(key))
            layered.set(section.name, _restore_colons(key), RawValue(value, origin))


def _unclosed_header_line(text: str) -> int | None:
    """Return the 1-based line of the first "[section" header that lacks its "]", if any.

    iniconfig reads such a line as a continuation of the previous value, so without this
    check "[predict" after "seed = 42" would silently make the value "42\n[predict".
    """
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("["):
            continue
        header = re.split(r"[#;]", line, maxsplit=1)[0].rstrip()
        if not header.endswith("]"):
            return number
    return None


def _protect_colons(text: str) -> str:
    """Hide ":" in the key of each ``key = value`` line from iniconfig.

    iniconfig also accepts ``key: value`` and splits a line at its first ":" whenever the
    text before "=" contains one, so it reads ``train:loss = regex`` as the key "train".
    SageMaker metric names contain colons, so here a key ends at the first "=" and a ":"
    separates key and value only on lines without "=". Line numbers do not change.
    """
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if iscommentline(line) or not line.strip() or line[0] in "[ \t":
            continue
        name, equals, rest = line.partition("=")
        if equals and ":" in name:
            lines[index] = name.replace(":", _COLON_STAND_IN) + equals + rest
    return "".join(lines)


def _restore_colons(text: str) -> str:
    return text.replace(_COLON_STAND_IN, ":")


def _apply_override(layered: LayeredSources, override: str, origin: Origin) -> None:
    """Apply one ``--set section.key=value``: the name splits at its last dot."""
    name, equals, value = override.partition("=")
    section, dot, key = name.rpartition(".")
    section, key = section.strip(), key.strip()
    if not equals:
        message = 'missing "=": expected section.key=value'
    elif not dot or not section:
        message = "missing the section: expected section.key=value"
    elif not key:
        message = "missing the key: expected section.key=value"
    else:
        if section not in layered.values:
            layered.open_section(section, origin)
        layered.set(section, key, RawValue(value.strip(), origin))
        return
    layered.problems.append(
        Problem(
            origin.file,
            None,
            None,
            None,
            override,
            message,
            'write --set section.key=value, e.g. "--set train.hyperparameters.epochs=3"',
        )
    )

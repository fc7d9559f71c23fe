"""Render the effective configuration as INI text, for `harness config show`."""

from __future__ import annotations

from harness.config.model import Config

_CONTINUATION_INDENT = "    "


def render_config(config: Config, with_origin: bool) -> str:
    """Render every section and key with its final value, defaults included.

    Without origins the text loads back to the same values. With origins, each setting
    line ends with a comment such as ``# config.local.ini:12``, aligned within its section.
    That text is for reading only, because the loader keeps a trailing comment as part of
    the value.
    """
    blocks: list[str] = []
    if with_origin:
        blocks.append(
            "# Effective configuration. The comment after each value names its source.\n"
            "# harness would read those comments as part of the values: to save a configuration\n"
            "# to load again, use `harness config show` without --origin."
        )
    for section, keys in config.effective().items():
        settings = [
            (_setting_lines(key, value), str(origin)) for key, (value, origin) in keys.items()
        ]
        width = max((len(lines[0]) for lines, _ in settings), default=0)
        rendered = [f"[{section}]"]
        for lines, origin in settings:
            first = f"{lines[0].ljust(width)}  # {origin}" if with_origin else lines[0]
            rendered.append(first)
            rendered.extend(lines[1:])
        blocks.append("\n".join(rendered))
    return "\n\n".join(blocks) + "\n"


def _setting_lines(key: str, value: str) -> list[str]:
    """Return ``key = value``, with each further line of a multi-line value indented."""
    first, *rest = value.split("\n")
    head = f"{key} = {first}" if first else f"{key} ="
    return [head] + [_CONTINUATION_INDENT + line for line in rest]

"""render_config output: it loads back to the same values, and origins are aligned comments."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.config import load_config, render_config

if TYPE_CHECKING:
    from tests.config.conftest import Project


def test_render_loads_back_to_same_values(
    project: Project, tmp_path_factory: pytest.TempPathFactory
) -> None:
    project.write(
        "config.local.ini",
        "[train.hyperparameters]\nepochs = 3\nnotes = first line\n  second line\n\n"
        "[train.environment]\nTF_CPP_MIN_LOG_LEVEL = 2\n",
    )
    original = project.load(overrides=["train.metrics.validation:map=validation:map=([0-9.]+)"])

    copy_root: Path = tmp_path_factory.mktemp("rendered")
    project.make_entry_points(copy_root)
    (copy_root / "config.ini").write_text(render_config(original, with_origin=False))
    reloaded = load_config(copy_root / "config.ini")

    assert reloaded.section_values("train.hyperparameters")["notes"] == "first line\nsecond line"
    for section, keys in original.effective().items():
        assert reloaded.section_values(section) == {key: value for key, (value, _) in keys.items()}
    assert reloaded.steps == original.steps
    assert reloaded.pipeline == original.pipeline


def test_render_lists_sections_in_schema_order(project: Project) -> None:
    text = render_config(project.load(), with_origin=False)

    headers = re.findall(r"^\[(.+)\]$", text, flags=re.MULTILINE)
    assert headers == [
        "pipeline",
        "session",
        "prepare",
        "prepare.arguments",
        "train",
        "train.hyperparameters",
        "train.metrics",
        "predict",
        "evaluate",
        "condition",
        "register",
        "package",
        "cloud",
        "tracking",
    ]


def test_render_with_origin_aligns_comments(project: Project) -> None:
    project.write("config.local.ini", "[train]\ninstance_count = 2\n")

    text = render_config(project.load(overrides=["train.volume_size_gb=50"]), with_origin=True)

    section = text.split("[train]\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert section[0].startswith("entry_point = steps/train/train.py")
    assert section[0].endswith(
        f"# config.ini:{project.line_of(project.base_text, 'entry_point = steps/train')}"
    )
    assert "instance_count = 2" in section[2]
    assert section[2].endswith("# config.local.ini:2")
    assert section[3].endswith("# default")
    assert section[4].endswith("# --set #1")
    comment_columns = {line.index("  # ") for line in section}
    assert len(comment_columns) == 1


def test_render_with_origin_has_comment_on_every_setting(project: Project) -> None:
    text = render_config(project.load(), with_origin=True)

    settings = [line for line in text.splitlines() if " = " in line and not line.startswith("#")]
    assert settings
    for line in settings:
        assert re.search(r"  # \S+$", line), line

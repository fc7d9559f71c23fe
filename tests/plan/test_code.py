"""Which files count as a step's code: its folder plus the local modules it imports."""

from __future__ import annotations

from pathlib import Path

from harness.plan.code import step_code_files


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def relative(root: Path, files: list[Path]) -> list[str]:
    return [p.relative_to(root).as_posix() for p in files]


def test_closure_follows_local_imports(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "common/__init__.py": "",
            "common/metrics.py": "import numpy\nfrom .math_util import dcg\n",
            "common/math_util.py": "import math\n",
            "common/unused.py": "",
            "train/train.py": "import sys\nfrom common import metrics\n",
            "train/helper.txt": "kept: files in the step folder count",
            "evaluate/evaluate.py": "from common.unused import x\n",
        },
    )
    files = step_code_files(tmp_path, tmp_path / "train" / "train.py")
    assert relative(tmp_path, files) == [
        "common/__init__.py",
        "common/math_util.py",
        "common/metrics.py",
        "train/helper.txt",
        "train/train.py",
    ]


def test_import_module_form(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "common/__init__.py": "",
            "common/letor.py": "",
            "prepare/prepare.py": "import common.letor as letor\n",
        },
    )
    files = step_code_files(tmp_path, tmp_path / "prepare" / "prepare.py")
    assert relative(tmp_path, files) == [
        "common/__init__.py",
        "common/letor.py",
        "prepare/prepare.py",
    ]


def test_unparsable_file_still_listed(tmp_path: Path) -> None:
    write(tmp_path, {"train/train.py": "def broken(:\n"})
    files = step_code_files(tmp_path, tmp_path / "train" / "train.py")
    assert relative(tmp_path, files) == ["train/train.py"]

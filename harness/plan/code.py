"""Find the code a step runs: its own folder and every local module it imports.

A step's cache key must change when a helper it imports changes (`steps/common/...`), and
must not change when an unrelated step changes. The imports are read with `ast`, never by
importing the step, so no step code runs in the harness process.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

# Parsed files, by location and the digest of their bytes: a tree, or the error that parsing
# raised. `harness watch` reads the step code after every save, and parsing is most of its cost.
_PARSED: dict[tuple[Path, str], ast.Module | SyntaxError | ValueError] = {}


def parse_python_file(path: Path) -> ast.Module:
    """Return the syntax tree of a UTF-8 Python file, remembered while its bytes stay the same.

    Callers must not change the tree. Raises SyntaxError for invalid syntax and ValueError for
    a file that is not UTF-8 text.
    """
    source = path.read_bytes()
    key = (path, hashlib.sha256(source).hexdigest())
    if key not in _PARSED:
        try:
            _PARSED[key] = ast.parse(source.decode("utf-8"), filename=str(path))
        except (SyntaxError, ValueError) as error:
            _PARSED[key] = error
    parsed = _PARSED[key]
    if isinstance(parsed, Exception):
        raise parsed
    return parsed


def _module_file(root: Path, dotted: str) -> list[Path]:
    """Return the files that importing `dotted` loads from `root`: packages' __init__ and the module."""
    parts = dotted.split(".")
    found: list[Path] = []
    for depth in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:depth])
        package_init = base / "__init__.py"
        module = base.with_suffix(".py")
        if package_init.is_file():
            found.append(package_init)
        elif module.is_file():
            found.append(module)
            break
        else:
            break
    return found


def _imported_names(path: Path, root: Path) -> frozenset[str]:
    """Return the dotted module names that `path` imports, relative imports resolved."""
    try:
        tree = parse_python_file(path)
    except (SyntaxError, ValueError):
        # A file that does not parse is still hashed; its imports are unknown.
        return frozenset()
    return _imports_of(tree, path.parent.relative_to(root).parts)


@functools.cache
def _imports_of(tree: ast.Module, package: tuple[str, ...]) -> frozenset[str]:
    # Trees hash by identity, and parse_python_file returns the same tree for the same bytes.
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            if base:
                names.add(base)
                # `from common import letor` may import the submodule common/letor.py.
                names.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(names)


def step_code_files(root: Path, entry_point: Path) -> list[Path]:
    """Return the step folder's files and the closure of local modules they import, sorted.

    `root` is the folder shipped as the job's code (`steps/`); a module counts as local when
    it resolves to a file below `root`. Standard and third-party imports are left out: the
    harness version and the environment stand for them.
    """
    step_folder = entry_point.parent
    files = {
        p
        for p in step_folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
    }
    pending = [p for p in files if p.suffix == ".py"]
    while pending:
        current = pending.pop()
        for name in _imported_names(current, root):
            for module in _module_file(root, name):
                if module not in files:
                    files.add(module)
                    pending.append(module)
    return sorted(files)

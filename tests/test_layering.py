"""The sans-I/O cores never import trio, socket or time (STYLE.md: Sans-I/O cores)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "quorumq"
CORES = ["protocol", "log", "replication", "controller/image", "groups", "security"]
FORBIDDEN = {"trio", "socket", "time", "asyncio", "threading"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _core_files() -> list[Path]:
    files: list[Path] = []
    for core in CORES:
        root = PACKAGE / core
        if root.is_dir():
            files.extend(sorted(root.rglob("*.py")))
        elif root.with_suffix(".py").is_file():
            files.append(root.with_suffix(".py"))
    return files


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_imports_no_io(path: Path) -> None:
    bad = _imports(path) & FORBIDDEN
    assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}: cores stay sans-I/O"


def test_layering_checks_something() -> None:
    assert _core_files(), "no core modules found: the layering test would check nothing"

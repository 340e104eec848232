"""Imports point one way: producer and consumer use shared; shared uses neither; they do not use each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "shared": {"producer", "consumer", "scrapeq"},
    "producer": {"consumer", "scrapeq"},
    "consumer": {"producer", "scrapeq"},
}
#: Only Worker entry modules may touch the Pyodide / Workers runtime.
RUNTIME_ONLY = {"js", "pyodide", "workers"}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        wrong = imported_packages(path) & FORBIDDEN[package]
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_only_worker_entries_import_the_workers_runtime(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        if path.name == "worker.py" or path.name == "cloudflare.py":
            continue
        assert not imported_packages(path) & RUNTIME_ONLY, path.relative_to(ROOT)

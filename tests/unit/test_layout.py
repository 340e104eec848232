"""House rules a newcomer relies on: imports point one way and never in a circle, names are unique, modules short."""

from __future__ import annotations

import ast
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("producer", "consumer", "shared", "scrapeq")
FORBIDDEN = {
    "shared": {"producer", "consumer", "scrapeq"},
    "producer": {"consumer", "scrapeq"},
    "consumer": {"producer", "scrapeq"},
}
#: Only Worker entry modules (and the Workers backend adapter) may touch the Pyodide / Workers runtime.
RUNTIME_ONLY = {"js", "pyodide", "workers"}
RUNTIME_ENTRIES = {"producer/worker.py", "consumer/worker.py", "shared/backends/cloudflare.py"}
#: Basenames that may repeat, because the folder says which one: each Worker's entry, each side's webhooks.
SHARED_BASENAMES = {"__init__.py", "worker.py", "webhooks.py"}
#: Class names that may repeat: pydantic-settings' nested `Default` config holders.
SHARED_CLASS_NAMES = {"Default"}
MAX_MODULE_LINES = 400
MAX_DOCSTRING_LINES = 2


def source_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def tree_of(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def imported_packages(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree_of(path)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def imported_modules(tree: ast.Module, package: str, known: set[str]) -> set[str]:
    """First-party modules a module of `package` imports, anywhere in it (functions and TYPE_CHECKING blocks too)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import submodule`
    return {name for name in found if name in known}


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in source_files()}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        # Importing a.b.c runs a/__init__ and a/b/__init__ too, but those edges are Python's, not a design
        # choice: a package's __init__ re-exporting its own submodules would otherwise look like a circle.
        graph[name] = {other for other in imported_modules(tree_of(path), package_of(path), known) if other != name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The circles: groups of modules that each reach every other of the group through imports, each sorted."""
    reach = {node: reachable(graph, node) for node in graph}
    groups = {
        tuple(sorted(other for other in reach[node] if node in reach[other])) for node in graph if node in reach[node]
    }
    return sorted(list(group) for group in groups)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        wrong = imported_packages(path) & FORBIDDEN[package]
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_only_worker_entries_import_the_workers_runtime() -> None:
    for path in source_files():
        if str(path.relative_to(ROOT)) in RUNTIME_ENTRIES:
            continue
        assert not imported_packages(path) & RUNTIME_ONLY, path.relative_to(ROOT)


def test_no_module_imports_itself_through_a_circle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100, "the scan found too little to mean anything"
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_import_scan_resolves_relative_submodule_and_function_level_imports() -> None:
    known = {"shared.errors", "shared.stores", "shared.stores.tasks", "shared.urls"}
    source = "from ..errors import X\nfrom . import tasks\ndef f():\n    import shared.urls\nimport json\n"
    found = imported_modules(ast.parse(source), "shared.stores", known)
    assert found == {"shared.errors", "shared.stores", "shared.stores.tasks", "shared.urls"}


def test_one_class_per_name() -> None:
    defined: dict[str, list[str]] = {}
    for path in source_files():
        for node in ast.walk(tree_of(path)):
            if isinstance(node, ast.ClassDef):
                defined.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    repeated = {name: where for name, where in defined.items() if len(where) > 1 and name not in SHARED_CLASS_NAMES}
    assert repeated == {}


def test_module_basenames_are_unique() -> None:
    counts = Counter(path.name for path in source_files())
    assert {name: n for name, n in counts.items() if n > 1 and name not in SHARED_BASENAMES} == {}


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_are_short_with_a_short_docstring(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{lines} lines"
    docstring = ast.get_docstring(tree_of(path), clean=True)
    assert docstring, "a module says in a line or two what it is for"
    assert len(docstring.splitlines()) <= MAX_DOCSTRING_LINES, docstring


def test_the_readme_layout_names_every_module_and_no_other() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\b(\w+\.py)\b", section))
    files = {path.name for path in source_files() if path.name not in ("__init__.py", "__main__.py")}
    assert files - named == set(), "modules the README's layout section does not name"
    assert named - files - {"wrangler.toml"} == set(), "names in the README's layout section that are no module"


def private_reaches(tree: ast.Module) -> list[str]:
    """`obj._name` where `_name` is not one this module defines, and `from m import _name`: another's privates."""
    own = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    own |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += [f"import {a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            mine = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not mine and node.attr not in own and ast.unparse(node) != "argparse._SubParsersAction":
                found.append(ast.unparse(node))
    return found


def test_no_module_reaches_into_another_modules_private_names() -> None:
    assert private_reaches(ast.parse("import x\nx._secret\nfrom y import _hidden\n")) == ["import _hidden", "x._secret"]
    for path in source_files():
        assert private_reaches(tree_of(path)) == [], path.relative_to(ROOT)

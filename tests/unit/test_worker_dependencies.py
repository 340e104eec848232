"""What pywrangler vendors into the Workers (deploy/cloudflare/pyproject.toml): Worker-safe packages only, pinned
as in the root pyproject.toml, and every package the Workers' code imports."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath

import pytest

from scrapeq.cloudflare.bundle import CONSUMER, PROJECT_DIR, WORKERS, WorkerSpec, select_modules

ROOT = Path(__file__).resolve().parents[2]
ROOT_PYPROJECT = ROOT / "pyproject.toml"
WORKER_PYPROJECT = ROOT / PROJECT_DIR / "pyproject.toml"
FIRST_PARTY = {"producer", "consumer", "shared", "scrapeq"}
#: Pure Python or in the Pyodide package index, so they can be vendored. Adding one here is a decision to check.
WORKER_SAFE = {"fastapi", "pydantic", "pydantic-settings", "httpx", "protego"}
#: In the default install for the local processes only; never vendored into a Worker.
LOCAL_ONLY_PACKAGES = {"uvicorn", "sniffio", "aiohttp", "rich", "mcp", "prometheus-client"}
#: Given by the Workers runtime, not by a package: `workers` and `asgi` (its SDK), `js` and `pyodide`.
RUNTIME = {"workers", "asgi", "js", "pyodide"}
#: Modules a bundle holds but a Worker never imports, and why. Each is imported only inside functions (checked).
LOCAL_ONLY_MODULES = {
    "consumer.fetch.aiohttp_transport": "the local fetch engine over aiohttp: consumer.fetch.client.build_client "
    "imports it only when fetch_engine is 'aiohttp'; the consumer Worker fetches with JS fetch (js_transport.py)",
}


def project_name(requirement: str) -> str:
    """The normalised project name of a requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match[1]).lower()


def dependencies(pyproject: Path) -> dict[str, str]:
    """`[project.dependencies]` of `pyproject` by project name, each requirement without spaces."""
    with pyproject.open("rb") as file:
        listed: list[str] = tomllib.load(file)["project"]["dependencies"]
    return {project_name(requirement): requirement.replace(" ", "") for requirement in listed}


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def with_requirements(names: Iterable[str]) -> set[str]:
    """`names` and everything they require, transitively, as installed here: extras left out, and requirements
    under another marker (`; python_version < "3.11"`) only when installed (their marker holds here)."""
    found: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for requirement in metadata.requires(name) or []:
            required = project_name(requirement)
            if not re.search(r"\bextra\s*==", requirement) and (";" not in requirement or _installed(required)):
                todo.append(required)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST, top: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, top
        return
    children = node.orelse if isinstance(node, ast.If) and _is_type_checking(node.test) else ast.iter_child_nodes(node)
    inner = top and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
    for child in children:
        yield from _import_nodes(child, inner)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(dotted name, imported at module level?) of every import that can run in `path` (not `if TYPE_CHECKING`).
    `from a import b` gives `a` and `a.b`: the latter is a module when a/b.py exists."""
    found: list[tuple[str, bool]] = []
    for node, top in _import_nodes(ast.parse(path.read_text(encoding="utf-8")), True):
        if isinstance(node, ast.Import):
            found += [(alias.name, top) for alias in node.names]
        else:
            assert node.level == 0 and node.module, f"{path}: a relative import; teach this test to follow it"
            found += [(node.module, top), *((f"{node.module}.{alias.name}", top) for alias in node.names)]
    return found


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.is_file()), None)


def reachable(entry: str, skip: Iterable[str] = ()) -> dict[str, list[tuple[str, bool]]]:
    """Every first-party module importing `entry` can import, lazily too, except `skip`: each with its imports."""
    skipped = set(skip)
    found: dict[str, list[tuple[str, bool]]] = {}
    todo = [entry]
    while todo:
        module = todo.pop()
        path = module_file(module)
        if module in found or module in skipped or path is None:
            continue
        found[module] = imports(path)
        for name, _ in found[module]:
            parts = name.split(".")
            if parts[0] in FIRST_PARTY:  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
                todo += [".".join(parts[:end]) for end in range(1, len(parts) + 1)]
    return found


def third_party(modules: dict[str, list[tuple[str, bool]]]) -> set[str]:
    """The top-level names `modules` import that are neither ours, the standard library's nor the runtime's."""
    names = {name.split(".")[0] for found in modules.values() for name, _ in found}
    return names - FIRST_PARTY - RUNTIME - set(sys.stdlib_module_names)


def distributions(names: Iterable[str]) -> dict[str, set[str]]:
    """Each import name with the installed projects that provide it."""
    provided = metadata.packages_distributions()
    return {name: {project_name(d) for d in provided.get(name, [])} for name in names}


def test_the_worker_list_names_worker_safe_packages_only() -> None:
    worker = set(dependencies(WORKER_PYPROJECT))
    assert not worker & LOCAL_ONLY_PACKAGES
    assert worker <= WORKER_SAFE, f"not known to be Worker-safe: {sorted(worker - WORKER_SAFE)}"


def test_every_worker_pin_is_the_root_pin() -> None:
    root = dependencies(ROOT_PYPROJECT)
    for name, requirement in dependencies(WORKER_PYPROJECT).items():
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][0-9A-Za-z.+!-]*", requirement), f"not an exact pin: {requirement}"
        assert requirement == root.get(name), f"{requirement} here, {root.get(name)} in the root pyproject.toml"


@pytest.mark.parametrize("worker", WORKERS.values(), ids=list(WORKERS))
def test_every_package_a_worker_imports_is_vendored(worker: WorkerSpec) -> None:
    modules = reachable(worker.entry_module, skip=LOCAL_ONLY_MODULES)
    files = [PurePosixPath(path.relative_to(ROOT).as_posix()) for path in map(module_file, modules) if path]
    assert select_modules(worker, files) == sorted(files), "the Worker imports modules its bundle lacks"
    listed = dependencies(WORKER_PYPROJECT)
    vendored = with_requirements(listed)
    root = set(dependencies(ROOT_PYPROJECT))
    for name, projects in distributions(third_party(modules)).items():
        assert projects, f"{worker.name} imports {name}, which no installed project provides"
        assert projects & vendored, f"{worker.name} imports {name} ({sorted(projects)}), which is not vendored"
        # A package of the default install that the Worker imports must be listed itself, not arrive by chance.
        assert not (projects & root) or projects & set(listed), f"{worker.name} imports {name}: list it"


def test_local_only_modules_exist_and_are_imported_only_inside_functions() -> None:
    everything = {module: found for w in WORKERS.values() for module, found in reachable(w.entry_module).items()}
    for local in LOCAL_ONLY_MODULES:
        assert module_file(local) is not None, f"{local} is gone: drop it from LOCAL_ONLY_MODULES"
        importers = [(module, top) for module, found in everything.items() for name, top in found if name == local]
        assert importers, f"no Worker module imports {local}: drop it from LOCAL_ONLY_MODULES"
        assert not [module for module, top in importers if top], f"{local} is imported at module level"


def test_without_the_exclusion_the_scan_finds_aiohttp_which_is_not_vendored() -> None:
    """The check above can fail: the consumer's bundle holds the aiohttp engine, only the exclusion leaves it out."""
    assert "aiohttp" in third_party(reachable(CONSUMER.entry_module))
    assert "aiohttp" not in third_party(reachable(CONSUMER.entry_module, skip=LOCAL_ONLY_MODULES))
    assert "aiohttp" not in with_requirements(dependencies(WORKER_PYPROJECT))


def test_the_default_install_has_what_the_local_processes_need() -> None:
    with ROOT_PYPROJECT.open("rb") as file:
        project = tomllib.load(file)["project"]
    root = dependencies(ROOT_PYPROJECT)
    assert LOCAL_ONLY_PACKAGES <= set(root), "uvicorn, sniffio and aiohttp belong to a plain `pip install .`"
    assert project["optional-dependencies"]["local"] == [], "`local` stays, empty, for older instructions"
    # Each default dependency is a decision: Worker-safe (and then the Workers list it too) or local-only.
    assert set(root) - LOCAL_ONLY_PACKAGES == set(dependencies(WORKER_PYPROJECT)) == WORKER_SAFE


def test_every_package_the_installed_code_imports_comes_with_the_default_install() -> None:
    """What `pip install .` (no extras) puts beside the packages it installs covers everything they import."""
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts): imports(path)
        for package in sorted(FIRST_PARTY)
        for path in (ROOT / package).rglob("*.py")
    }
    installed = with_requirements(dependencies(ROOT_PYPROJECT))
    for name, projects in distributions(third_party(modules)).items():
        assert projects & installed, f"{name} is imported but not in the default install: {sorted(projects)}"

"""Worker bundles: each module root holds its Worker's package, `shared` and a generated entry, and nothing else."""

from __future__ import annotations

import ast
from pathlib import Path, PurePosixPath

import pytest

from scrapeq.cloudflare.bundle import (
    CONSUMER,
    ENTRY,
    MARKER,
    PRODUCER,
    WORKERS,
    WorkerSpec,
    build,
    entry_source,
    select_modules,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "chosen"),
    [
        ("producer/app.py", True),
        ("shared/backends/cloudflare.py", True),
        ("consumer/fetch/fetcher.py", False),  # the producer's bundle has no consumer code
        ("scrapeq/cli.py", False),
        ("tests/conftest.py", False),
        (".venv/lib/python3.11/site-packages/x.py", False),
        ("node_modules/pyodide/x.py", False),
        ("shared/__pycache__/models.cpython-311.py", False),
        ("shared/.hidden/x.py", False),
        ("shared/py.typed", False),
        ("producer", False),
        ("deploy/cloudflare/wrangler.toml", False),
        ("deploy/cloudflare/build/producer/shared/models.py", False),  # never a bundle of a bundle
        ("deploy/cloudflare/python_modules/httpx/__init__.py", False),
    ],
)
def test_select_modules_for_the_producer(path: str, chosen: bool) -> None:
    assert select_modules(PRODUCER, [PurePosixPath(path)]) == ([PurePosixPath(path)] if chosen else [])


@pytest.mark.parametrize("worker", WORKERS.values(), ids=list(WORKERS))
def test_entry_reexports_default_from_the_workers_entry_module(worker: WorkerSpec) -> None:
    tree = ast.parse(entry_source(worker))
    [imported] = [node for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert (imported.module, [alias.name for alias in imported.names]) == (worker.entry_module, ["Default"])
    assert (ROOT / worker.entry_path).is_file()


def test_build_copies_the_packages_python_files_only(tmp_path: Path) -> None:
    bundle = build(ROOT, CONSUMER, out=tmp_path / "consumer")
    files = sorted(p.relative_to(bundle.module_root).as_posix() for p in bundle.module_root.rglob("*") if p.is_file())
    assert sorted([*bundle.modules, MARKER]) == files
    assert bundle.modules[0] == ENTRY
    for expected in (
        "consumer/worker.py",
        "consumer/fetch/js_transport.py",
        "shared/models.py",
        "shared/backends/cloudflare.py",
    ):
        assert expected in bundle.modules
    assert not [m for m in bundle.modules if m.split("/")[0] not in ("consumer", "shared", ENTRY)]
    assert (bundle.module_root / "shared/models.py").read_bytes() == (ROOT / "shared/models.py").read_bytes()


def test_rebuild_drops_modules_that_no_longer_exist(tmp_path: Path) -> None:
    out = tmp_path / "producer"
    build(ROOT, PRODUCER, out=out)
    (out / "shared" / "removed_since.py").write_text("")
    build(ROOT, PRODUCER, out=out)
    assert not (out / "shared" / "removed_since.py").exists()


def test_build_refuses_to_replace_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a bundle"):
        build(ROOT, PRODUCER, out=tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_build_outside_a_checkout_says_where_to_run_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="repository root"):
        build(tmp_path, PRODUCER, out=tmp_path / "out")

"""The extractor runs on Pyodide (the consumer Worker's runtime) from only the files the bench copies, and returns
there exactly what it returns on CPython."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cloudflare.client import missing_requirement
from tests.fixtures.sitegen import generate

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(bool(missing_requirement()), reason=str(missing_requirement())),
]


def run(argv: list[str]) -> dict[str, object]:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_extraction_runs_on_pyodide_as_on_cpython(tmp_path: Path) -> None:
    generate(tmp_path, pages=20)
    args = ["--site", str(tmp_path), "--base-url", "http://127.0.0.1:1/", "--step", "5"]
    pyodide = run(["node", "benchmarks/extract_pyodide.mjs", *args])
    cpython = run([sys.executable, "benchmarks/extract_cpython.py", *args])
    assert pyodide["runtime"] == "pyodide" and cpython["runtime"] == "cpython"
    assert str(pyodide["python"]).startswith("3.1") and pyodide["pages"] == cpython["pages"] == 4
    assert pyodide["outputs_sha256"] == cpython["outputs_sha256"]

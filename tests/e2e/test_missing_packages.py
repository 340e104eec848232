"""A package `scrapeq dev`, `serve` or `worker` needs is missing: one line on stderr naming what to install, exit 2,
no traceback and nothing started (the package is blocked in the child process: `sys.modules[name] = None`)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from scrapeq import requirements
from shared.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
with (ROOT / "pyproject.toml").open("rb") as _file:
    #: The pins of the default install, by package name: what the message must tell to install.
    PINS = {r.split("==")[0]: r for r in tomllib.load(_file)["project"]["dependencies"]}


def run_blocked(blocked: list[str], argv: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None\n"
        "from scrapeq.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPEQ_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**environ, "SCRAPEQ_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("command", "blocked"),
    [("dev", ["uvicorn"]), ("serve", ["uvicorn"]), ("worker", ["aiohttp"]), ("dev", ["uvicorn", "aiohttp"])],
)
def test_a_missing_package_is_one_line_naming_what_to_install(tmp_path: Path, command: str, blocked: list[str]) -> None:
    data_dir = tmp_path / "data"
    done = run_blocked(blocked, [command], data_dir)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"scrapeq: error: scrapeq {command} needs {blocked[0]} (")
    assert line.count("pip install ") == 1 and all(f"'{PINS[name]}'" in line for name in blocked)
    assert done.stdout == ""
    assert not data_dir.exists()  # nothing started: not even the demo tenant was written


def test_the_worker_on_the_httpx_engine_does_not_need_aiohttp() -> None:
    httpx_engine = Settings(fetch_engine="httpx")
    assert requirements.needs("worker", httpx_engine) == [requirements.PROMETHEUS]
    assert requirements.needs("dev", httpx_engine) == [requirements.UVICORN, requirements.PROMETHEUS]
    assert requirements.needs("worker", Settings()) == [requirements.AIOHTTP, requirements.PROMETHEUS]


def test_nothing_is_missing_in_the_default_install() -> None:
    for command in ("dev", "serve", "worker"):
        requirements.check(command, Settings())


def test_without_scrapeqs_metadata_the_hint_names_bare_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requirements, "DISTRIBUTION", "no-such-distribution-anywhere")
    assert requirements.install_hint(["uvicorn"]) == "pip install 'uvicorn'"


@pytest.mark.parametrize(
    ("argv", "blocked"),
    [
        (["crawl", "http://127.0.0.1:9/", "--kb", "docs", "--wait"], "rich"),
        (["task", "0" * 32], "rich"),
        (["mcp"], "mcp"),
    ],
)
def test_the_client_commands_name_what_they_miss(tmp_path: Path, argv: list[str], blocked: str) -> None:
    done = run_blocked([blocked], argv, tmp_path / "data")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"scrapeq: error: scrapeq {argv[0]} needs {blocked} (") and f"'{PINS[blocked]}'" in line


def test_the_commands_that_do_not_draw_need_no_rich(tmp_path: Path) -> None:
    # `tasks` reaches for the service (none listens there: exit 3), never for rich.
    done = run_blocked(["rich"], ["tasks", "--api-url", "http://127.0.0.1:9"], tmp_path / "data")
    assert done.returncode == 3 and "cannot reach the service" in done.stderr, done.stderr

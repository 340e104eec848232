"""`pip install <checkout>` with no extras, in a new venv: its `scrapeq dev` serves, and the three clients it
brings work against it: the SDK, `scrapeq crawl` and `scrapeq mcp` (listed by the MCP SDK's own client)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.conftest import LOOPBACK
from tests.e2e.conftest import GENEROUS_LIMITS, free_port, wait_for_health
from tests.fixtures.versioned import Version, VersionedSite

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
#: What a user's clone does not hold: the venvs, the Node tools, the caches.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", ".*_cache", "__pycache__", "*.egg-info", "build", "results", ".scrapeq"
)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("plain-install")
    checkout = tmp / "checkout"
    shutil.copytree(ROOT, checkout, ignore=NOT_IN_A_CLONE)
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=120)
    pip = [str(tmp / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", str(checkout)]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=540, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "venv" / "bin"


def test_a_plain_install_gives_the_service_the_sdk_the_cli_and_the_mcp_server(venv: Path, tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SCRAPEQ_", "VIRTUAL_ENV", "PYTHON"))}
    env = {
        **environ,
        "SCRAPEQ_DATA_DIR": str(tmp_path / "data"),
        "SCRAPEQ_ALLOW_PRIVATE_NETWORKS": LOOPBACK,
        "SCRAPEQ_LOG_LEVEL": "WARNING",
        **GENEROUS_LIMITS,
    }

    def scrapeq(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        command = [str(venv / "scrapeq"), *args]
        return subprocess.run(command, env={**env, **extra}, capture_output=True, text=True, timeout=90, check=False)

    # Nothing of the test tools came with it, and the code runs from the venv, not from this checkout.
    probe = "import importlib.util as u, scrapeq; print(scrapeq.__file__, u.find_spec('pytest') is None)"
    where = subprocess.run([str(venv / "python"), "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    assert where.stdout.split() == [
        str(next(venv.parent.glob("lib/python*/site-packages/scrapeq/__init__.py"))),
        "True",
    ]

    tenant = json.loads(scrapeq("tenant", "create", "plain", "--kb", "docs", "--json").stdout)
    key = json.loads(scrapeq("key", "create", "--tenant", tenant["tenant_id"], "--json").stdout)["api_key"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "dev.log").open("w") as log, VersionedSite() as site:
        site.pages = {
            "/index.html": Version('<html><head><title>Home</title></head><body><a href="/a.html">a</a></body></html>'),
            "/a.html": Version(
                "<html><head><title>A</title></head><body><h1>Page A</h1><p>text of a</p></body></html>"
            ),
        }
        dev = subprocess.Popen([str(venv / "scrapeq"), "dev", "--port", str(port)], env=env, stdout=log, stderr=log)
        try:
            wait_for_health(base)
            client_env = {"SCRAPEQ_API_URL": base, "SCRAPEQ_API_KEY": key}
            crawled = scrapeq(
                "crawl", site.url("/index.html"), "--kb", "docs", "--limit", "2", "--wait", "--json", **client_env
            )
            assert crawled.returncode == 0, crawled.stderr
            task = json.loads(crawled.stdout)
            assert task["status"] == "completed" and task["progress"]["pages_done"] == 2

            sdk = (
                "from scrapeq.client import Client\n"
                "with Client() as client:\n"
                f"    print(*[p.title for p in client.pages({task['task_id']!r})])\n"
            )
            read = subprocess.run(
                [str(venv / "python"), "-c", sdk],
                env={**env, **client_env},
                capture_output=True,
                text=True,
                check=False,
            )
            assert read.returncode == 0 and read.stdout.split() == ["Home", "A"], read.stderr

            names = _mcp_tools(venv / "scrapeq", {**env, **client_env})
            assert names == {"scrape", "crawl", "task_status", "get_pages", "list_knowledge_base_documents"}
        finally:
            dev.terminate()
            dev.wait(timeout=15)


def _mcp_tools(command: Path, env: dict[str, str]) -> set[str]:
    import asyncio

    async def listed() -> set[str]:
        params = StdioServerParameters(command=str(command), args=["mcp"], env=env)
        with open(os.devnull, "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                return {tool.name for tool in (await client.list_tools()).tools}

    return asyncio.run(listed())

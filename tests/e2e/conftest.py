"""Helpers to run the `scrapeq` CLI as a user does: real processes sharing one data dir."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LOOPBACK


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: Rate limits no single test client reaches (the limits have their own tests).
GENEROUS_LIMITS = {f"SCRAPEQ_{name}RATE_LIMIT_BURST": "100000" for name in ("", "TENANT_", "IP_")}


class Cli:
    """Runs `python -m scrapeq` with one data dir and environment."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.env = {
            **os.environ,
            "SCRAPEQ_DATA_DIR": str(data_dir),
            "SCRAPEQ_ALLOW_PRIVATE_NETWORKS": LOOPBACK,
            "SCRAPEQ_LOG_LEVEL": "WARNING",
            **env,
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scrapeq", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def json(self, *args: str) -> dict[str, object]:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        data: dict[str, object] = json.loads(done.stdout)
        return data

    def new_key(self, name: str, kb: str) -> str:
        """A new tenant allowed `kb`, and the API key of one of its keys."""
        tenant = self.json("tenant", "create", name, "--kb", kb)
        return str(self.json("key", "create", "--tenant", str(tenant["tenant_id"]))["api_key"])

    def start_http(self, command: str, log: Path) -> str:
        """`scrapeq dev` or `serve` on a free loopback port, once healthy; its base URL."""
        port = free_port()
        self.start(command, "--port", str(port), log=log)
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base)
        return base

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scrapeq", *args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_health(base: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base} did not become healthy")


def poll_task(
    client: httpx.Client, task_id: str, until: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    task: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = client.get(f"/tasks/{task_id}")
        assert answer.status_code == 200, answer.text
        task = answer.json()
        if until(task):
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not reach the expected state: {task}")


def all_pages(client: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": "25", **({"cursor": cursor} if cursor else {})}
        body = client.get(f"/tasks/{task_id}/pages", params=params).json()
        pages += body["pages"]
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path / "data")
    yield runner
    runner.stop_all()

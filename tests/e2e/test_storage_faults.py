"""A real full disk under `serve` + `worker`: the data dir is a small tmpfs that a filler file fills up. Submits
answer 503 with Retry-After (never 500), `/health` reports the backend, what was stored reads back the same, the
database passes SQLite's integrity check, and once the filler is gone the service recovers by itself: the tasks
it accepted all complete. Needs the right to mount a tmpfs (root): skipped where that is refused."""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import GENEROUS_LIMITS, Cli, all_pages, poll_task
from tests.fixtures.sitegen import generate
from tests.fixtures.static import serve_directory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DISK_MB = 24
LIMIT = 5


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write `path` until the file system has no byte left."""
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    with path.open("ab", buffering=0) as out:  # the last partial chunk's worth
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0")


def test_a_full_disk_answers_503_keeps_what_is_stored_and_recovers_by_itself(tmp_path: Path) -> None:
    generate(tmp_path / "site", pages=60, seed=5)
    with tmpfs(tmp_path / "disk", DISK_MB) as disk:
        cli = Cli(
            disk / "data",
            SCRAPEQ_QUEUE_VISIBILITY_TIMEOUT_S="5",
            SCRAPEQ_QUEUE_RETRY_BASE_S="0.5",
            **GENEROUS_LIMITS,
        )
        try:
            run(cli, tmp_path, disk)
        finally:
            cli.stop_all()


def run(cli: Cli, tmp_path: Path, disk: Path) -> None:
    key = cli.new_key("full", "kb_full")
    base = cli.start_http("serve", tmp_path / "serve.log")
    cli.start("worker", log=tmp_path / "worker.log")
    with (
        # Slow pages: the crawls below are still running when the disk fills up.
        serve_directory(tmp_path / "site", delay_s=0.3) as site,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client,
    ):

        def submit(n: int) -> httpx.Response:
            body = {"url": f"{site}/index.html?n={n}", "knowledge_base_id": "kb_full", "limit": LIMIT}
            return client.post("/scrape", json=body)

        first = submit(0).json()["task_id"]
        done = poll_task(client, first, lambda t: t["status"] == "completed")
        stored = all_pages(client, first)
        assert len(stored) == LIMIT

        accepted = [submit(n).json()["task_id"] for n in range(1, 4)]
        poll_task(client, accepted[-1], lambda t: t["status"] == "running")
        fill(disk / "filler")
        refused = None
        for n in range(10, 500):
            answer = submit(n)
            assert answer.status_code in (202, 503), answer.text
            if answer.status_code == 503:
                refused = answer
                break
            accepted.append(answer.json()["task_id"])
        assert refused is not None, "500 submits went through on a full disk"
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "storage_unavailable"
        assert int(refused.headers["retry-after"]) > 0
        health = client.get("/health")
        assert health.status_code == 503, health.text
        assert int(health.headers["retry-after"]) > 0
        # What was stored before reads back the same while the disk is full.
        assert client.get(f"/tasks/{first}").json() == done
        assert all_pages(client, first) == stored
        time.sleep(2)  # the worker's writes fail for a while too

        (disk / "filler").unlink()
        deadline = time.monotonic() + 20
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the service did not recover within 20 s of space coming back"
            time.sleep(0.2)
        after = submit(1000)
        assert after.status_code == 202, after.text
        accepted.append(after.json()["task_id"])
        # Every task the service accepted, running when the disk filled up or after, completes with its pages.
        for task_id in accepted:
            task = poll_task(client, task_id, lambda t: t["status"] not in ("queued", "running"), timeout_s=90)
            assert task["status"] == "completed", task
            assert task["progress"]["pages_done"] == LIMIT == len(all_pages(client, task_id))

    cli.stop_all()
    with sqlite3.connect(disk / "data" / "scrapeq.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    logs = (tmp_path / "serve.log").read_text() + (tmp_path / "worker.log").read_text()
    assert "unhandled error" not in logs
    assert "database is locked" not in logs

"""A real `scrapeq worker` with the production caps meets the whole hostile site: every page ends with its code,
the worker survives, and its peak resident memory (VmHWM) stays under 128 MB."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Cli, free_port, wait_for_health
from tests.fixtures.hostile import CASES, HostileSite

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PEAK_RSS_LIMIT_MB = 128
TERMINAL = ("completed", "failed", "cancelled")


def peak_rss_mb(pid: int) -> float:
    """The process's high-water mark of resident memory, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def wait_all(client: httpx.Client, task_ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    tasks: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for task_id in task_ids:
            if task_id not in tasks or tasks[task_id]["status"] not in TERMINAL:
                response = client.get(f"/tasks/{task_id}")
                assert response.status_code == 200, response.text
                tasks[task_id] = response.json()
        if all(task["status"] in TERMINAL for task in tasks.values()):
            return tasks
        time.sleep(0.5)
    raise AssertionError(f"tasks still running: {[t for t in tasks.values() if t['status'] not in TERMINAL]}")


def test_the_worker_ends_every_hostile_page_and_stays_under_128_mb(tmp_path: Path, cli: Cli) -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("VmHWM is read from /proc")
    # Production caps (10 MiB bodies, 10 redirects, 2000 links, 4 requests per host, 4 slices at once), with
    # shorter timeouts and retries so that the battery takes seconds, not minutes.
    cli.env.update(
        SCRAPEQ_FETCH_CONNECT_TIMEOUT_S="1.5",
        SCRAPEQ_FETCH_READ_TIMEOUT_S="1.5",
        SCRAPEQ_FETCH_TOTAL_TIMEOUT_S="2",
        SCRAPEQ_QUEUE_MAX_RETRIES="0",
        SCRAPEQ_QUEUE_RETRY_BASE_S="0.1",
        SCRAPEQ_QUEUE_RETRY_MAX_S="0.2",
        # the API's own limits are not under test here
        SCRAPEQ_MAX_CONCURRENT_TASKS="100",
    )
    for scope in ("", "IP_", "TENANT_"):
        cli.env.update({f"SCRAPEQ_{scope}RATE_LIMIT_PER_S": "1000", f"SCRAPEQ_{scope}RATE_LIMIT_BURST": "1000"})
    tenant = cli.json("tenant", "create", "hostile", "--kb", "kb")
    key = cli.json("key", "create", "--tenant", str(tenant["tenant_id"]))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cli.start("serve", "--port", str(port), log=tmp_path / "serve.log")
    worker = cli.start("worker", log=tmp_path / "worker.log")
    wait_for_health(base)
    headers = {"Authorization": f"Bearer {key['api_key']}"}
    with HostileSite() as site, httpx.Client(base_url=base, headers=headers, timeout=10) as client:

        def submit(url: str, **fields: object) -> str:
            response = client.post("/scrape", json={"url": url, "knowledge_base_id": "kb", **fields})
            assert response.status_code == 202, response.text
            task_id: str = response.json()["task_id"]
            return task_id

        crawl = submit(site.url("/"), limit=len(CASES) + 1, max_depth=1)
        direct = {case.path: submit(site.url(case.path)) for case in CASES}
        began = time.monotonic()
        tasks = wait_all(client, [crawl, *direct.values()], timeout_s=150)
        elapsed = time.monotonic() - began
        pages = client.get(f"/tasks/{crawl}/pages", params={"limit": "100"}).json()["pages"]
        peak = peak_rss_mb(worker.pid)
        alive = worker.poll() is None
    print(f"\nworker peak RSS (VmHWM) through the hostile battery: {peak:.1f} MB ({elapsed:.1f} s)")
    assert alive, (tmp_path / "worker.log").read_text()[-3000:]
    assert tasks[crawl]["status"] == "completed"
    codes = {page["url"].removeprefix(site.url("")): page["error"] and page["error"]["code"] for page in pages}
    assert codes == {"/": None} | {case.path: case.code for case in CASES}
    for case in CASES:
        task = tasks[direct[case.path]]
        if case.code is None:
            assert task["status"] == "completed", task
        else:  # a hostile start page fails its task with the page's code
            assert (task["status"], task["error"]["code"]) == ("failed", case.code), task
    assert peak < PEAK_RSS_LIMIT_MB

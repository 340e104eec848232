"""`scrapeq serve` and `scrapeq worker` as separate processes: a crawl survives a SIGKILLed worker."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Cli, all_pages, free_port, poll_task, wait_for_health
from tests.fixtures.sitegen import generate
from tests.fixtures.static import serve_directory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LIMIT = 60


def test_a_worker_killed_mid_crawl_is_replaced_and_the_task_gets_exactly_limit_pages(tmp_path: Path, cli: Cli) -> None:
    generate(tmp_path / "site", pages=200, seed=3)
    cli.env.update(
        SCRAPEQ_QUEUE_VISIBILITY_TIMEOUT_S="2",
        SCRAPEQ_SLICE_MAX_PAGES="8",
        SCRAPEQ_CRAWL_CONCURRENCY="2",
    )
    tenant = cli.json("tenant", "create", "e2e", "--kb", "kb_e2e")
    key = cli.json("key", "create", "--tenant", str(tenant["tenant_id"]))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cli.start("serve", "--port", str(port), log=tmp_path / "serve.log")
    worker = cli.start("worker", log=tmp_path / "worker-1.log")
    wait_for_health(base)

    with (
        serve_directory(tmp_path / "site", delay_s=0.02) as site,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key['api_key']}"}, timeout=10) as client,
    ):
        submitted = client.post(
            "/scrape",
            json={
                "url": f"{site}/index.html",
                "knowledge_base_id": "kb_e2e",
                "limit": LIMIT,
                "formats": ["markdown"],
            },
        )
        assert submitted.status_code == 202
        task_id = submitted.json()["task_id"]

        mid = poll_task(client, task_id, lambda t: t["progress"]["pages_done"] >= 16)
        assert mid["status"] == "running"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        cli.start("worker", log=tmp_path / "worker-2.log")

        done = poll_task(client, task_id, lambda t: t["status"] in ("completed", "failed", "cancelled"))
        pages = all_pages(client, task_id)

    assert done["status"] == "completed", done
    assert done["progress"]["pages_done"] == LIMIT
    urls = [p["url"] for p in pages if p["error"] is None]
    assert len(urls) == LIMIT
    assert len(set(urls)) == LIMIT
    assert all(p["markdown"] for p in pages if p["error"] is None)
    assert not any("/private/" in url for url in urls)  # robots.txt obeyed across the restart

"""Four processes on one data dir (two `serve`, two `worker`) under load: submits, polls and crawls all at once
never surface `database is locked` (no 5xx, nothing in any log), and every task completes with its pages."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import GENEROUS_LIMITS, Cli, all_pages, poll_task
from tests.fixtures.sitegen import generate
from tests.fixtures.static import serve_directory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CLIENTS = 16
TASKS_PER_CLIENT = 6
LIMIT = 5


def test_four_processes_on_one_data_dir_never_report_a_locked_database(tmp_path: Path) -> None:
    generate(tmp_path / "site", pages=200, seed=3)
    cli = Cli(tmp_path / "data", SCRAPEQ_MAX_CONCURRENT_TASKS="1000", **GENEROUS_LIMITS)
    try:
        key = cli.new_key("busy", "kb_busy")
        bases = [cli.start_http("serve", tmp_path / f"serve-{n}.log") for n in (1, 2)]
        for n in (1, 2):
            cli.start("worker", log=tmp_path / f"worker-{n}.log")
        with serve_directory(tmp_path / "site") as site:

            def one_client(n: int) -> list[tuple[str, str]]:
                """Submits its tasks through one server and polls them through the other, as fast as it can."""
                submit_to, poll_at = bases[n % 2], bases[(n + 1) % 2]
                mine: list[tuple[str, str]] = []
                headers = {"Authorization": f"Bearer {key}"}
                with httpx.Client(headers=headers, timeout=30) as client:
                    for t in range(TASKS_PER_CLIENT):
                        body = {"url": f"{site}/index.html?c={n}&t={t}", "knowledge_base_id": "kb_busy", "limit": LIMIT}
                        answer = client.post(f"{submit_to}/scrape", json=body, headers={"Idempotency-Key": f"{n}-{t}"})
                        assert answer.status_code == 202, answer.text
                        task_id = answer.json()["task_id"]
                        mine.append((task_id, poll_at))
                        for listed in (client.get(f"{poll_at}/tasks/{task_id}"), client.get(f"{poll_at}/tasks")):
                            assert listed.status_code == 200, listed.text
                return mine

            with ThreadPoolExecutor(CLIENTS) as pool:
                tasks = [task for mine in pool.map(one_client, range(CLIENTS)) for task in mine]
            assert len(tasks) == CLIENTS * TASKS_PER_CLIENT
            for task_id, base in tasks:
                with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                    task = poll_task(client, task_id, lambda t: t["status"] not in ("queued", "running"), timeout_s=120)
                    assert task["status"] == "completed", task
                    assert task["progress"]["pages_done"] == LIMIT == len(all_pages(client, task_id))
    finally:
        cli.stop_all()
    for log in sorted(tmp_path.glob("*.log")):
        text = log.read_text()
        assert "locked" not in text, f"{log.name}: {text[-2000:]}"
        assert "Traceback" not in text, f"{log.name}: {text[-2000:]}"

"""A page that trickles or stalls ends its task within the page's time budget (every attempt and backoff
included), on a real `scrapeq dev`."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Cli
from tests.fixtures.hostile import HostileSite

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
#: What "a few seconds" over the budget may take: polling, the queue's wake-up, the terminal writes.
SLACK_S = 3.0


@pytest.mark.parametrize(
    ("budget_s", "env"),
    [
        # The budget is shorter than one attempt's own deadline (30 s): it alone ends the page.
        (8.0, {}),
        # Attempts of 4 s with 1 s backoff: the start page is tried again, until the budget has no room.
        (10.0, {"SCRAPEQ_FETCH_TOTAL_TIMEOUT_S": "4", "SCRAPEQ_QUEUE_RETRY_BASE_S": "1"}),
    ],
    ids=["budget-under-one-attempt", "retries-within-budget"],
)
def test_a_trickling_or_stalled_only_page_ends_the_task_within_its_budget(
    tmp_path: Path, budget_s: float, env: dict[str, str]
) -> None:
    cli = Cli(tmp_path / "data", SCRAPEQ_PAGE_BUDGET_S=str(budget_s), **env)
    try:
        key = cli.new_key("budget", "kb_b")
        base = cli.start_http("dev", tmp_path / "dev.log")
        with HostileSite() as site, httpx.Client(base_url=base, timeout=10) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            submitted = {}
            for path in ("/trickle", "/silent"):
                body = {"url": site.url(path), "knowledge_base_id": "kb_b", "limit": 1}
                answer = client.post("/scrape", json=body)
                assert answer.status_code == 202, answer.text
                submitted[answer.json()["task_id"]] = time.monotonic()
            ended: dict[str, tuple[float, dict[str, object]]] = {}
            while len(ended) < len(submitted) and time.monotonic() - min(submitted.values()) < budget_s * 4:
                for task_id, at in submitted.items():
                    task = client.get(f"/tasks/{task_id}").json()
                    if task_id not in ended and task["status"] not in ("queued", "running"):
                        ended[task_id] = (time.monotonic() - at, task)
                time.sleep(0.2)
        assert len(ended) == 2, "a task did not end"
        for took, task in ended.values():
            assert task["status"] == "failed" and task["error"]["code"] == "timeout", task
            assert took <= budget_s + SLACK_S, f"{task['url']} ended after {took:.1f} s (budget {budget_s} s)"
    finally:
        cli.stop_all()

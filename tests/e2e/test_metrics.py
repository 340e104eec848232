"""`GET /metrics` of `scrapeq serve` adds up what a separate `scrapeq worker` did, counted exactly; only the
operator's token reads it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import GENEROUS_LIMITS, Cli
from tests.fixtures.receiver import Receiver, serve_receiver
from tests.fixtures.versioned import Version, VersionedSite

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TOKEN = "operator-metrics-token-0123456789"
KB = "kb_docs"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _page(*links: str) -> Version:
    anchors = "".join(f'<a href="{link}">{link}</a>' for link in links)
    return Version(f"<html><head><title>t</title></head><body><p>{'text ' * 50}</p>{anchors}</body></html>")


@pytest.fixture
def site() -> Iterator[VersionedSite]:
    server = VersionedSite()
    # Four pages to store, two links that answer 404 (robots.txt is a 404 too: allowed, not a page).
    server.pages = {
        "/": _page("/a", "/b", "/gone-1"),
        "/a": _page("/c", "/gone-2"),
        "/b": _page("/"),
        "/c": _page(),
    }
    with server:
        yield server


def scrape(base: str) -> Samples:
    answer = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_add_up_serve_and_worker(tmp_path: Path, site: VersionedSite) -> None:
    cli = Cli(tmp_path / "data", SCRAPEQ_METRICS_TOKEN=TOKEN, **GENEROUS_LIMITS)
    try:
        key = cli.new_key("acme", KB)
        receiver = Receiver()
        with contextlib.ExitStack() as stack, serve_receiver(receiver):
            base = cli.start_http("serve", log=tmp_path / "serve.log")
            cli.start("worker", log=tmp_path / "worker.log")
            _check_guard(base, key)
            before = scrape(base)
            client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10)
            stack.enter_context(client)
            assert httpx.get(f"{base}/tasks", timeout=10).status_code == 401
            assert client.get("/no-such-route").status_code == 404
            webhook = {"url": receiver.url(), "events": ["task.completed"]}
            body = {"url": site.url("/"), "knowledge_base_id": KB, "limit": 20, "webhook": webhook}
            answer = client.post("/scrape", json=body)
            assert answer.status_code == 202, answer.text
            task_id = answer.json()["task_id"]
            polls, task = 0, {}
            for _ in range(600):
                task = client.get(f"/tasks/{task_id}").json()
                polls += 1
                if task["status"] == "completed":
                    break
                time.sleep(0.05)
            assert task["status"] == "completed", task
            assert task["progress"] == {"pages_done": 4, "pages_failed": 2, "pages_skipped": 0}
            # The webhook is delivered after the task ends; its counter moves once the delivery is recorded.
            deadline = time.monotonic() + 30
            while moved(before, after := scrape(base), "scrapeq_webhook_attempts_total", outcome="delivered") < 1:
                assert time.monotonic() < deadline, "the webhook delivery was not counted"
                time.sleep(0.1)
    finally:
        cli.stop_all()

    # Counted by the worker process, read through the API process.
    assert moved(before, after, "scrapeq_pages_total", outcome="stored") == 4
    assert moved(before, after, "scrapeq_pages_total", outcome="failed") == 2
    assert moved(before, after, "scrapeq_pages_total", outcome="skipped") == 0
    assert moved(before, after, "scrapeq_page_errors_total", code="http_status") == 2
    assert moved(before, after, "scrapeq_tasks_finished_total", status="completed") == 1
    assert moved(before, after, "scrapeq_tasks_finished_total", status="failed") == 0
    assert moved(before, after, "scrapeq_webhook_attempts_total", outcome="delivered") == 1
    assert moved(before, after, "scrapeq_webhook_attempts_total", outcome="retrying") == 0
    stored_html = sum(len(site.pages[path].html.encode()) for path in ("/", "/a", "/b", "/c"))
    assert moved(before, after, "scrapeq_fetched_bytes_total") >= stored_html
    assert moved(before, after, "scrapeq_slice_duration_seconds_count") >= 1
    # Counted by the API process.
    assert moved(before, after, "scrapeq_tasks_submitted_total") == 1
    requests = "scrapeq_http_requests_total"
    assert moved(before, after, requests, route="/scrape", method="POST", status="202") == 1
    assert moved(before, after, requests, route="/tasks/{task_id}", method="GET", status="200") == polls
    assert moved(before, after, requests, route="/tasks", method="GET", status="401") == 1
    assert moved(before, after, requests, route="unmatched", method="GET", status="404") == 1
    latency = "scrapeq_http_request_duration_seconds_count"
    assert moved(before, after, latency, route="/scrape", method="POST") == 1
    assert value(after, "scrapeq_http_request_duration_seconds_bucket", route="/scrape", method="POST", le="+Inf") >= 1
    # Read from the SQLite queue at scrape time: nothing left to do, nothing dead.
    assert value(after, "scrapeq_queue_messages", state="visible") == 0
    assert ("scrapeq_queue_messages", frozenset({("state", "leased")})) in after
    assert value(after, "scrapeq_dead_letter_messages") == 0
    assert len(list((tmp_path / "data" / "metrics").glob("counter_*.db"))) >= 2  # one file per process


def _check_guard(base: str, api_key: str) -> None:
    assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
    tenant = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    assert tenant.status_code == 401
    assert tenant.headers["content-type"] == "application/problem+json"
    assert tenant.json()["code"] == "unauthorized"
    near = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}, timeout=10)
    assert near.status_code == 401
    assert httpx.post(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 405


def test_no_metrics_without_a_token(cli: Cli, tmp_path: Path) -> None:
    base = cli.start_http("dev", log=tmp_path / "dev.log")
    answer = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert answer.status_code == 404
    assert (tmp_path / "data" / "metrics").is_dir()  # still counted, for when it is served

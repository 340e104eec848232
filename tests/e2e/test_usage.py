"""`GET /usage` of two tenants crawling a loopback site (`scrapeq serve` + `scrapeq worker`) equals what each did,
each sees only its own, and `scrapeq usage --json` over the data dir says the same."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import GENEROUS_LIMITS, Cli, poll_task
from tests.fixtures.receiver import Receiver, serve_receiver
from tests.fixtures.versioned import Version, VersionedSite

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

KB = "kb_usage"
NOT_FOUND_BODY = len(b"not found")


def _page(*links: str) -> Version:
    anchors = "".join(f'<a href="{link}">{link}</a>' for link in links)
    return Version(f"<html><head><title>t</title></head><body><p>{'usage ' * 40}</p>{anchors}</body></html>")


@pytest.fixture
def site() -> Iterator[VersionedSite]:
    server = VersionedSite()
    # Tenant A: 5 pages to store, 2 links answering 404. Tenant B: 2 pages, 1 link answering 404.
    server.pages = {
        "/a/": _page("/a/1", "/a/2", "/a/gone-1"),
        "/a/1": _page("/a/3", "/a/gone-2"),
        "/a/2": _page("/a/4", "/a/"),
        "/a/3": _page(),
        "/a/4": _page(),
        "/b/": _page("/b/1", "/b/gone"),
        "/b/1": _page(),
    }
    with server:
        yield server


@pytest.fixture
def slow_site() -> Iterator[VersionedSite]:
    server = VersionedSite(delay_s=0.5)
    server.pages = {"/": _page(*(f"/{n}" for n in range(60)))} | {f"/{n}": _page() for n in range(60)}
    with server:
        yield server


def page_bytes_of(site: VersionedSite, path: str) -> int:
    return len(site.pages[path].html.encode())


def _tenant(cli: Cli, name: str) -> tuple[str, httpx.Client, str]:
    tenant = cli.json("tenant", "create", name, "--kb", KB)
    key = str(cli.json("key", "create", "--tenant", str(tenant["tenant_id"]))["api_key"])
    return str(tenant["tenant_id"]), httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10), key


def _submit(client: httpx.Client, url: str, limit: int, **extra: Any) -> str:
    answer = client.post("/scrape", json={"url": url, "knowledge_base_id": KB, "limit": limit, **extra})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["task_id"])


def _ended(task: dict[str, Any]) -> bool:
    return task["status"] in ("completed", "failed", "cancelled")


def _settled(task: dict[str, Any]) -> bool:
    deliveries = (task.get("webhook") or {}).get("deliveries") or []
    return _ended(task) and bool(deliveries) and all(d["status"] != "pending" for d in deliveries)


def _usage(client: httpx.Client, **params: str) -> dict[str, Any]:
    answer = client.get("/usage", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _wait_for_totals(client: httpx.Client, expected: dict[str, Any], timeout_s: float = 15.0) -> dict[str, Any]:
    """The totals once they reach `expected` (the last counts land just after a task's or delivery's end)."""
    deadline = time.monotonic() + timeout_s
    while True:
        totals: dict[str, Any] = _usage(client, granularity="hour")["totals"]
        compared = totals | {name: None for name, value in expected.items() if value is None}
        if compared == expected or time.monotonic() > deadline:
            return totals
        time.sleep(0.2)


def _expected(tasks: dict[str, int], pages: tuple[int, int, int], bytes_: int, errors: dict[str, int],
              webhooks: tuple[int, int]) -> dict[str, Any]:  # fmt: skip
    return {
        "tasks_submitted": tasks.get("submitted", 0),
        "tasks_completed": tasks.get("completed", 0),
        "tasks_failed": tasks.get("failed", 0),
        "tasks_cancelled": tasks.get("cancelled", 0),
        "pages_stored": pages[0],
        "pages_failed": pages[1],
        "pages_skipped": pages[2],
        "bytes_fetched": bytes_,
        "webhooks_delivered": webhooks[0],
        "webhooks_failed": webhooks[1],
        "errors": errors,
    }


def test_usage_of_two_tenants_is_what_each_did(tmp_path: Path, site: VersionedSite, slow_site: VersionedSite) -> None:
    cli = Cli(tmp_path / "data", SCRAPEQ_WEBHOOK_BACKOFF_S="0.2", **GENEROUS_LIMITS)
    clients: list[httpx.Client] = []
    try:
        ok_hook, gone_hook = Receiver(), Receiver([410])
        with serve_receiver(ok_hook), serve_receiver(gone_hook):
            base = cli.start_http("serve", log=tmp_path / "serve.log")
            cli.start("worker", log=tmp_path / "worker.log")
            tenant_a, a, _ = _tenant(cli, "alpha")
            tenant_b, b, _ = _tenant(cli, "beta")
            clients += [a, b]
            a.base_url = b.base_url = httpx.URL(base)
            assert _usage(a)["totals"]["tasks_submitted"] == 0

            # Tenant A: one crawl with a webhook that is delivered.
            a_task = _submit(a, site.url("/a/"), 20, webhook={"url": ok_hook.url(), "events": ["task.completed"]})
            # Tenant B: one crawl whose webhook receiver answers 410 (the delivery gives up), a replay of it (not
            # a new task), and a slow crawl cancelled while it runs.
            hook = {"url": gone_hook.url(), "events": ["task.completed"]}
            body = {"url": site.url("/b/"), "knowledge_base_id": KB, "limit": 20, "webhook": hook}
            b_task = b.post("/scrape", json=body, headers={"Idempotency-Key": "usage-1"}).json()["task_id"]
            replay = b.post("/scrape", json=body, headers={"Idempotency-Key": "usage-1"})
            assert replay.status_code == 200 and replay.json()["task_id"] == b_task
            slow = _submit(b, slow_site.url("/"), 60)
            poll_task(b, slow, lambda t: t["progress"]["pages_done"] >= 2, timeout_s=60)
            assert b.delete(f"/tasks/{slow}").status_code in (200, 202)

            a_done = poll_task(a, a_task, _settled, timeout_s=60)
            b_done = poll_task(b, b_task, _settled, timeout_s=60)
            cancelled = poll_task(b, slow, _ended, timeout_s=60)

        assert a_done["status"] == "completed" and a_done["progress"] == {
            "pages_done": 5, "pages_failed": 2, "pages_skipped": 0}  # fmt: skip
        assert a_done["webhook"]["deliveries"][0]["status"] == "delivered"
        assert b_done["status"] == "completed" and b_done["webhook"]["deliveries"][0]["status"] == "failed"
        assert cancelled["status"] == "cancelled"
        page_bytes = {path: len(version.html.encode()) for path, version in site.pages.items()}
        slow_done = cancelled["progress"]["pages_done"]
        assert slow_done >= 2

        expected_a = _expected(
            {"submitted": 1, "completed": 1},
            (5, 2, 0),
            sum(n for path, n in page_bytes.items() if path.startswith("/a/")) + 2 * NOT_FOUND_BODY,
            {"http_status": 2},
            (1, 0),
        )
        totals_a = _wait_for_totals(a, expected_a)
        assert totals_a == expected_a
        # The cancelled crawl's pages are what its task says it stored. Its bytes: at least its stored pages', at
        # most what the slow site sent in full (pages in flight when it stopped were abandoned, or finished).
        slow_page = len(slow_site.pages["/0"].html.encode())
        slow_sent = sum(len(slow_site.pages[path].html.encode()) * n for path, n in slow_site.full.items())
        b_bytes = page_bytes["/b/"] + page_bytes["/b/1"] + NOT_FOUND_BODY
        expected_b = _expected(
            {"submitted": 2, "completed": 1, "cancelled": 1},
            (2 + slow_done, 1 + cancelled["progress"]["pages_failed"], cancelled["progress"]["pages_skipped"]),
            0,
            {"http_status": 1},
            (0, 1),
        )
        totals_b = _wait_for_totals(b, expected_b | {"bytes_fetched": None})
        assert totals_b | {"bytes_fetched": 0} == expected_b
        slow_stored = page_bytes_of(slow_site, "/") + (slow_done - 1) * slow_page
        assert b_bytes + slow_stored <= totals_b["bytes_fetched"] <= b_bytes + slow_sent

        # Each tenant's buckets hold only its own figures, in contiguous hours; the day view sums to the same.
        hourly = _usage(a, granularity="hour")
        assert hourly["tenant_id"] == tenant_a and len(hourly["buckets"]) in (24, 25)
        assert sum(bucket["pages_stored"] for bucket in hourly["buckets"]) == 5
        assert _usage(b, granularity="day")["totals"] == totals_b
        assert _usage(a, granularity="day")["totals"] == expected_a

        # The operator's command over the data dir agrees with the API, bucket by bucket.
        now = datetime.now(UTC)
        window = {"from": (now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "to": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
        for tenant_id, client in ((tenant_a, a), (tenant_b, b)):
            api = _usage(client, granularity="hour", **window)
            done = cli.run("usage", "--tenant", tenant_id, "--granularity", "hour", "--from", window["from"],
                           "--to", window["to"], "--json")  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout) == api
        text = cli.run("usage", "--tenant", tenant_a)
        assert text.returncode == 0 and "http_status 2" in text.stdout, text.stdout
        assert cli.run("usage", "--tenant", "tn_nobody").returncode == 2
    finally:
        for open_client in clients:
            open_client.close()
        cli.stop_all()


def test_usage_refuses_bad_parameters_with_field_errors(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "data", **GENEROUS_LIMITS)
    clients: list[httpx.Client] = []
    try:
        base = cli.start_http("serve", log=tmp_path / "serve.log")
        _, client, _ = _tenant(cli, "gamma")
        client.base_url = httpx.URL(base)
        clients.append(client)
        assert httpx.get(f"{base}/usage", timeout=10).status_code == 401
        for params, field in (
            ({"granularity": "week"}, "granularity"),
            ({"from": "yesterday"}, "from"),
            ({"from": "2020-01-01T00:00:00Z", "granularity": "hour"}, "from"),  # over 1000 buckets
            ({"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "from"),
        ):
            answer = client.get("/usage", params=params)
            assert answer.status_code == 422, (params, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
            problem = answer.json()
            assert problem["code"] == "validation_error"
            assert [error["loc"] for error in problem["errors"]] == [["query", field]], problem
        day = client.get("/usage", params={"from": "2026-12-01T10:00:00+02:00", "to": "2026-12-03T00:00:00Z"})
        assert day.status_code == 200, day.text
        report = day.json()
        assert report["from"] == "2026-12-01T00:00:00Z" and report["to"] == "2026-12-03T00:00:00Z"
        assert [bucket["start"] for bucket in report["buckets"]] == ["2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"]
        assert all(bucket["tasks_submitted"] == 0 and bucket["errors"] == {} for bucket in report["buckets"])
        assert "/usage" in client.get("/openapi.json").json()["paths"]
    finally:
        for open_client in clients:
            open_client.close()
        cli.stop_all()

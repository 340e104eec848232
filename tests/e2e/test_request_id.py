"""One crawl followed by its request id through the JSON log lines of `scrapeq serve` and `scrapeq worker` (separate
processes on one data dir): the access line, the task's start, slices and end, and its webhook delivery."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import GENEROUS_LIMITS, Cli, poll_task
from tests.fixtures.receiver import Receiver, serve_receiver
from tests.fixtures.versioned import Version, VersionedSite

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TRACE = "my-trace-123"
GENERATED = re.compile(r"^req_[0-9a-f]{24}$")
SECRETS = re.compile(r"sq_[a-z2-7]{12}_[a-z2-7]{8}|whsec_[A-Za-z0-9+/]{8}")


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of the log as a JSON object; a line that is not one fails the test."""
    entries = []
    for number, line in enumerate(log.read_text(encoding="utf-8").splitlines(), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{log.name}:{number} is not JSON: {line!r}") from None
        assert isinstance(entry, dict), line
        for name in ("time", "level", "logger", "message", "request_id", "tenant_id", "task_id"):
            assert name in entry, f"{log.name}:{number} has no {name}: {line}"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"]), entry["time"]
        entries.append(entry)
    return entries


def site_pages(count: int) -> dict[str, Version]:
    links = "".join(f'<a href="/p{n}.html">p{n}</a>' for n in range(count))
    served = {"/index.html": Version(f"<html><body><main><h1>index</h1>{links}</main></body></html>")}
    for n in range(count):
        served[f"/p{n}.html"] = Version(f"<html><body><main><p>page {n}</p></main></body></html>")
    return served


def test_a_crawl_is_followed_by_its_request_id_through_both_processes(tmp_path: Path) -> None:
    cli = Cli(
        tmp_path / "data",
        SCRAPEQ_LOG_FORMAT="json",
        SCRAPEQ_LOG_LEVEL="INFO",
        SCRAPEQ_SLICE_MAX_PAGES="2",
        **GENEROUS_LIMITS,
    )
    tenant = cli.json("tenant", "create", "traced", "--kb", "kb_t")
    tenant_id = str(tenant["tenant_id"])
    api_key = str(cli.json("key", "create", "--tenant", tenant_id)["api_key"])
    serve_log, worker_log = tmp_path / "serve.log", tmp_path / "worker.log"
    receiver = Receiver()
    try:
        with VersionedSite() as site, serve_receiver(receiver):
            site.pages.update(site_pages(4))
            base = cli.start_http("serve", log=serve_log)
            cli.start("worker", log=worker_log)
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {api_key}"}, timeout=10) as api:
                body = {
                    "url": site.url("/index.html"),
                    "knowledge_base_id": "kb_t",
                    "limit": 5,
                    "max_depth": 1,
                    "webhook": {"url": receiver.url("/hook"), "events": ["task.completed"]},
                }
                answer = api.post("/scrape", json=body, headers={"X-Request-ID": TRACE})
                assert answer.status_code == 202, answer.text
                assert answer.headers["X-Request-ID"] == TRACE
                task_id = answer.json()["task_id"]
                task = poll_task(api, task_id, lambda t: t["status"] == "completed")
                assert task["progress"]["pages_done"] == 5

                # No header: a generated id. An insane one (too long, bad characters): replaced by a generated id.
                plain = api.get(f"/tasks/{task_id}")
                assert GENERATED.match(plain.headers["X-Request-ID"])
                for insane in ("x" * 129, "has space", "semi;colon", "ünï"):
                    replaced = api.get("/health", headers={"X-Request-ID": insane.encode()})
                    assert GENERATED.match(replaced.headers["X-Request-ID"]), insane
                kept = api.get("/nope", headers={"X-Request-ID": "a" * 128})
                assert kept.status_code == 404 and kept.headers["X-Request-ID"] == "a" * 128
                unauthorised = httpx.get(f"{base}/tasks", headers={"X-Request-ID": "no.key:1"})
                assert unauthorised.status_code == 401 and unauthorised.headers["X-Request-ID"] == "no.key:1"
            deadline = time.monotonic() + 20
            while not receiver.received and time.monotonic() < deadline:
                time.sleep(0.05)
            assert receiver.received, "the webhook was not delivered"
            deadline = time.monotonic() + 10
            while "webhook" not in worker_log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        cli.stop_all()

    served, worked = json_lines(serve_log), json_lines(worker_log)
    everything = serve_log.read_text() + worker_log.read_text()
    assert not SECRETS.search(everything), "a secret reached the logs"

    [access] = [e for e in served if e["logger"] == "scrapeq.access" and e.get("route") == "/scrape"]
    assert access["request_id"] == TRACE and access["task_id"] == task_id and access["tenant_id"] == tenant_id
    assert access["method"] == "POST" and access["status"] == 202 and access["duration_ms"] >= 0
    polls = [e for e in served if e.get("route") == "/tasks/{task_id}"]
    assert polls and all(GENERATED.match(e["request_id"]) and e["tenant_id"] == tenant_id for e in polls)
    assert any(e.get("path") == "/nope" and e["status"] == 404 and e["request_id"] == "a" * 128 for e in served)

    traced = [e for e in worked if e["request_id"] == TRACE]
    assert traced, "no worker line carries the request id"
    assert all(e["task_id"] == task_id and e["tenant_id"] == tenant_id for e in traced)
    messages = [e["message"] for e in traced]
    assert "task started" in messages
    slices = [e for e in traced if e["message"].startswith("slice ") and "checkpointed" in e["message"]]
    assert len(slices) >= 2, messages
    assert all("pages_done" in e for e in slices)  # the event's own fields
    [completed] = [e for e in traced if e["message"] == "task completed"]
    assert completed["pages_done"] == 5
    [delivery] = [e for e in traced if e["logger"] == "consumer.webhooks"]
    assert delivery["event_type"] == "task.completed" and delivery["delivery_status"] == "delivered"
    assert delivery["http_status"] == 200 and delivery["attempt"] == 1
    # Lines of the task that carry no other request id: everything the worker said of it was correlated.
    of_task = [e for e in worked if e["task_id"] == task_id]
    assert all(e["request_id"] == TRACE for e in of_task)

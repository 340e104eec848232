"""Operator metrics in one process: route templates and statuses of API answers (the fast path and the limits'
refusals too), the Prometheus text they add up to, the `/metrics` guard, and the metrics directory's clean-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from producer.app import create_app
from scrapeq import multiproc, prometheus
from shared import telemetry
from shared.backends.factory import open_memory_backends
from shared.settings import Settings
from tests.conftest import make_settings, new_caller

TOKEN = "t0ken-for-the-operator-only"


@dataclass
class Recording(telemetry.NullRecorder):
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        assert 0 <= seconds < 10
        self.requests.append((route, method, status))

    def task_submitted(self, tenant_id: str) -> None:
        self.submitted.append(tenant_id)


@pytest.fixture
def recording() -> Iterator[Recording]:
    recorder = Recording()
    previous = telemetry.install(recorder)
    yield recorder
    telemetry.install(previous)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    backends = open_memory_backends(visibility_timeout_s=30, max_retries=1)
    settings = make_settings(tmp_path).model_copy(update={"max_request_body_bytes": 2000})
    app = create_app(settings, backends=backends)
    caller = await new_caller(backends, "alice", ["kb_a1"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http, caller.api_key
    await backends.aclose()


async def test_each_answer_is_counted_under_its_route_template(
    api: tuple[httpx.AsyncClient, str], recording: Recording
) -> None:
    http, key = api
    auth = {"Authorization": f"Bearer {key}"}
    body = {"url": "http://127.0.0.1:9/", "knowledge_base_id": "kb_a1", "limit": 2}
    accepted = await http.post("/scrape", json=body, headers=auth)  # the fast path: no FastAPI routing
    assert accepted.status_code == 202
    task_id = accepted.json()["task_id"]
    assert (await http.get(f"/tasks/{task_id}", headers=auth)).status_code == 200
    assert (await http.get("/tasks/nope", headers=auth)).status_code == 404
    assert (await http.post("/scrape", json={**body, "limit": 0}, headers=auth)).status_code == 422  # via FastAPI
    big = json.dumps({**body, "url": "http://127.0.0.1:9/" + "a" * 3000})
    too_big = await http.post("/scrape", content=big, headers={**auth, "Content-Type": "application/json"})
    assert too_big.status_code == 413  # refused before routing
    assert (await http.delete("/health")).status_code == 405
    assert (await http.get("/no/such/path")).status_code == 404
    assert recording.requests == [
        ("/scrape", "POST", 202),
        ("/tasks/{task_id}", "GET", 200),
        ("/tasks/{task_id}", "GET", 404),
        ("/scrape", "POST", 422),
        ("/scrape", "POST", 413),
        ("/health", "DELETE", 405),
        ("unmatched", "GET", 404),
    ]
    assert len(recording.submitted) == 1


@pytest.fixture
def multiprocess_mode(tmp_path: Path) -> Iterator[Settings]:
    """This test process in prometheus-client's multiprocess mode over a fresh data dir, put back afterwards."""
    settings = make_settings(tmp_path)
    saved_env, saved_class = os.environ.get(multiproc.ENV), values.ValueClass
    previous = telemetry.recorder()
    yield settings
    telemetry.install(previous)
    values.ValueClass = saved_class
    if saved_env is None:
        os.environ.pop(multiproc.ENV, None)
    else:
        os.environ[multiproc.ENV] = saved_env


async def test_metrics_text_adds_up_and_is_guarded(multiprocess_mode: Settings) -> None:
    recorder = prometheus.install(multiprocess_mode)
    recorder.request("/scrape", "POST", 202, 0.002)
    recorder.request("/scrape", "POST", 202, 0.004)
    recorder.page("tn_a", "stored", None)
    recorder.page("tn_a", "failed", "timeout")
    recorder.fetched(512)
    recorder.task_finished("tn_a", "cancelled")
    recorder.webhook("tn_a", telemetry.WEBHOOK_OUTCOME["pending"])
    backends = open_memory_backends(visibility_timeout_s=30, max_retries=1)
    await backends.jobs.send({"n": 1})
    await backends.jobs.send({"n": 2}, delay_s=60)

    async def inner(scope: object, receive: object, send: object) -> None:
        raise AssertionError("/metrics must not reach the app")

    endpoint = prometheus.MetricsEndpoint(inner, token=TOKEN, jobs=backends.jobs, dead_letters=backends.dead_letters)
    transport = httpx.ASGITransport(app=endpoint)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN[:-1]}"})).status_code == 401
        answer = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    await backends.aclose()
    assert answer.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    route = (("method", "POST"), ("route", "/scrape"))
    assert samples[("scrapeq_http_requests_total", (*route, ("status", "202")))] == 2
    assert samples[("scrapeq_http_request_duration_seconds_count", route)] == 2
    assert samples[("scrapeq_http_request_duration_seconds_bucket", (("le", "0.0025"), *route))] == 1
    assert samples[("scrapeq_pages_total", (("outcome", "stored"),))] == 1
    assert samples[("scrapeq_pages_total", (("outcome", "failed"),))] == 1
    assert samples[("scrapeq_page_errors_total", (("code", "timeout"),))] == 1
    assert samples[("scrapeq_fetched_bytes_total", ())] == 512
    assert samples[("scrapeq_tasks_finished_total", (("status", "cancelled"),))] == 1
    assert samples[("scrapeq_webhook_attempts_total", (("outcome", "retrying"),))] == 1
    assert samples[("scrapeq_queue_messages", (("state", "visible"),))] == 1
    assert samples[("scrapeq_queue_messages", (("state", "delayed"),))] == 1
    assert samples[("scrapeq_dead_letter_messages", ())] == 0
    assert list(multiproc.metrics_dir(multiprocess_mode).glob(f"counter_{os.getpid()}.db"))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_old_files_go_only_when_no_process_of_the_data_dir_is_alive(multiprocess_mode: Settings) -> None:
    directory = multiproc.metrics_dir(multiprocess_mode)
    directory.mkdir(parents=True)
    dead, alive = _dead_pid(), os.getppid()
    names = [f"counter_{dead}.db", f"gauge_livesum_{dead}.db", f"counter_{alive}.db", f"histogram_{alive}.db"]
    for name in names:
        (directory / name).write_bytes(b"")
    (directory / "notes.txt").write_text("not ours")
    multiproc.prepare(multiprocess_mode)
    # Another process is alive: the dead one's counters stay (totals must not drop), its live gauge goes.
    assert sorted(p.name for p in directory.iterdir()) == sorted([*names[:1], *names[2:], "notes.txt"])
    (directory / f"counter_{alive}.db").unlink()
    (directory / f"histogram_{alive}.db").unlink()
    assert os.environ[multiproc.ENV] == str(directory)
    multiproc.prepare(multiprocess_mode)
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]  # a fresh start: from zero

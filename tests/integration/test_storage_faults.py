"""A SQLite database that refuses writes (as a full or read-only disk does): the API answers 503 problems with
Retry-After instead of 500s, `/health` says so, what is stored stays readable and intact, and the service is
itself again as soon as writes go through. The refusal is SQLite's own: an authorizer on every connection denies
the writes while the fault is on (`tests/e2e/test_storage_faults.py` fills a real disk)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from consumer.decision import ACK, Decision
from consumer.local import LocalWorker
from producer.app import create_app
from shared.backends.base import Backends
from shared.backends.factory import open_sqlite_backends
from shared.backends.sqlite import db
from shared.settings import Settings
from tests.conftest import Caller, new_caller

PROBLEM = "application/problem+json"
WRITES = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}


class WriteFault:
    """While `tables` is set, SQLite refuses every write to those tables (None: to every table)."""

    def __init__(self) -> None:
        self.on = False
        self.tables: set[str] | None = None
        #: Once a write is refused, refuse every write (a disk that fills up at that moment).
        self.spreads = False

    def authorizer(self, action: int, table: str | None, *_: Any) -> int:
        if self.on and action in WRITES and (self.tables is None or table in self.tables):
            if self.spreads:
                self.tables = None
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK


@pytest.fixture
def fault(monkeypatch: pytest.MonkeyPatch) -> WriteFault:
    fault = WriteFault()
    connect: Callable[..., sqlite3.Connection] = sqlite3.connect

    def faulty_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        # SQLite asks the authorizer when it prepares a statement: no statement cache, so it asks every time.
        conn = connect(*args, **kwargs, cached_statements=0)
        conn.set_authorizer(fault.authorizer)
        return conn

    monkeypatch.setattr(db.sqlite3, "connect", faulty_connect)
    return fault


@pytest.fixture
async def sqlite_backends(settings: Settings, fault: WriteFault) -> AsyncIterator[Backends[Any]]:
    settings.data_dir.mkdir(parents=True)
    opened = open_sqlite_backends(settings.sqlite_path, visibility_timeout_s=30, max_retries=3)
    yield opened
    await opened.aclose()


@pytest.fixture
async def api(settings: Settings, sqlite_backends: Backends[Any]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, backends=sqlite_backends)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def carol(sqlite_backends: Backends[Any]) -> Caller:
    return await new_caller(sqlite_backends, "carol", ["kb_c"])


def body(n: int = 0) -> dict[str, object]:
    return {"url": f"http://127.0.0.1:9/{n}", "knowledge_base_id": "kb_c", "limit": 3}


def assert_unavailable(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert int(response.headers["retry-after"]) > 0
    problem: dict[str, Any] = response.json()
    assert problem["status"] == 503
    return problem


def integrity(settings: Settings) -> str:
    with sqlite3.connect(settings.sqlite_path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.mark.parametrize("as_fast_path", [True, False], ids=["fast-path", "fastapi"])
async def test_refused_writes_answer_503_and_the_service_recovers_by_itself(
    api: httpx.AsyncClient, carol: Caller, fault: WriteFault, settings: Settings, as_fast_path: bool
) -> None:
    # The fast path takes plain JSON submits; another content type goes through FastAPI's route.
    content_type = "application/json" if as_fast_path else "application/json; charset=utf-8"
    headers = {**carol.headers, "Content-Type": content_type}

    async def post(n: int, key: str | None = None) -> httpx.Response:
        extra = {"Idempotency-Key": key} if key else {}
        content = json.dumps(body(n))
        return await api.post("/scrape", content=content, headers={**headers, **extra})

    stored = await post(0)
    assert stored.status_code == 202
    before = (await api.get(stored.json()["status_url"], headers=carol.headers)).json()

    fault.on = True
    problem = assert_unavailable(await post(1))
    assert problem["code"] == "storage_unavailable"
    assert "sqlite" not in problem["detail"].lower()  # the backend's own message (with its path) stays in the log
    assert_unavailable(await post(2, key="retry-me"))
    health = assert_unavailable(await api.get("/health"))
    assert health["backend"] == "sqlite"
    # Reads still work, and show what was stored before.
    assert (await api.get(stored.json()["status_url"], headers=carol.headers)).json() == before
    listed = await api.get("/tasks", headers=carol.headers)
    assert listed.status_code == 200
    assert [t["task_id"] for t in listed.json()["tasks"]] == [before["task_id"]]

    fault.on = False
    assert (await api.get("/health")).status_code == 200
    # The refused submit holds nothing: its Idempotency-Key creates the task now.
    retried = await post(2, key="retry-me")
    assert retried.status_code == 202, retried.text
    assert (await post(2, key="retry-me")).status_code == 200
    assert integrity(settings) == "ok"


async def test_an_enqueue_refused_after_the_task_was_stored_fails_that_task(
    api: httpx.AsyncClient, carol: Caller, fault: WriteFault, sqlite_backends: Backends[Any]
) -> None:
    fault.on, fault.tables = True, {"queue_messages"}
    refused = await api.post("/scrape", json=body(), headers={**carol.headers, "Idempotency-Key": "k1"})
    assert_unavailable(refused)
    [task] = (await api.get("/tasks", headers=carol.headers)).json()["tasks"]
    # Stored but never enqueued: it ends `failed` at once, holds no quota place and no Idempotency-Key.
    assert task["status"] == "failed"
    assert task["error"]["code"] == "enqueue_failed"
    fault.on = False
    again = await api.post("/scrape", json=body(), headers={**carol.headers, "Idempotency-Key": "k1"})
    assert again.status_code == 202
    assert again.json()["task_id"] != task["task_id"]


async def test_a_task_stored_but_neither_enqueued_nor_failed_is_failed_once_writes_work(
    settings: Settings, sqlite_backends: Backends[Any], fault: WriteFault, carol: Caller
) -> None:
    settings = settings.model_copy(update={"max_concurrent_tasks": 1})
    app = create_app(settings, backends=sqlite_backends)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
        fault.on, fault.tables, fault.spreads = True, {"queue_messages"}, True
        assert_unavailable(await api.post("/scrape", json=body(), headers=carol.headers))
        [task] = (await api.get("/tasks", headers=carol.headers)).json()["tasks"]
        assert task["status"] == "queued"  # stored; the enqueue and the writes after it were refused
        fault.on = False
        for _ in range(100):
            task = (await api.get(f"/tasks/{task['task_id']}", headers=carol.headers)).json()
            if task["status"] != "queued":
                break
            await asyncio.sleep(0.1)
        assert task["status"] == "failed"
        assert task["error"]["code"] == "enqueue_failed"
        # Its place in the tenant's one concurrent task is free again.
        assert (await api.post("/scrape", json=body(1), headers=carol.headers)).status_code == 202


class CountingHandler:
    """Acks every message; counts them."""

    def __init__(self) -> None:
        self.handled: list[str] = []

    async def handle(self, body: dict[str, Any], *, message_id: str, attempts: int) -> Decision:
        self.handled.append(str(body["n"]))
        return ACK

    async def handle_dead_letter(self, body: dict[str, Any]) -> None:
        pass


async def test_a_worker_waits_out_refused_writes_and_then_takes_its_messages(
    sqlite_backends: Backends[Any], fault: WriteFault, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(3):
        await sqlite_backends.jobs.send({"n": n})
    handler = CountingHandler()
    assert sqlite_backends.dead_letters is not None
    worker = LocalWorker(
        handler=handler,  # type: ignore[arg-type]
        jobs=sqlite_backends.jobs,
        dead_letters=sqlite_backends.dead_letters,
        concurrency=2,
        grace_s=1,
    )
    stop = asyncio.Event()
    fault.on = True  # a receive takes a lease: a write
    running = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(1.5)
    assert not running.done()  # the worker stays up through the outage
    assert handler.handled == []
    fault.on = False
    for _ in range(100):
        if len(handler.handled) == 3:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(running, 10)
    assert sorted(handler.handled) == ["0", "1", "2"]
    assert await sqlite_backends.jobs.size() == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("storage unavailable" in m for m in messages) == 1  # one line per outage, not one per try
    assert any("storage available again" in m for m in messages)

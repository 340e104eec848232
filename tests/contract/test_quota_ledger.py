"""The quota ledger every backend's factory builds (`Backends.quotas`): over KV keys (memory, Cloudflare) or the
embedded database's own tables (SQLite, exact under concurrent writers)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared import keys
from shared.backends.base import Backends
from shared.backends.factory import open_sqlite_backends
from shared.backends.sqlite.db import _SCHEMA_V1, SCHEMA_VERSION
from shared.backends.sqlite.ledger import SqliteQuotaLedger
from shared.models import ScrapeRequest, Task, TaskStatus
from shared.stores.quotas import ACTIVE_MARKER_TTL_S, CONCURRENT_TASKS, PAGES_PER_DAY, Quotas, Refusal, day_start_ms
from shared.stores.tasks import TaskStore

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TENANT = "tn_ledger"


def task_id(n: int) -> str:
    return f"{n:032x}"


def usage(path: Path, tenant_id: str) -> tuple[int, int]:
    """What the SQLite ledger holds for the tenant: its tasks with a place, its pages reserved on `NOW`'s day."""
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT active, day_ms, day_pages FROM quota_usage WHERE tenant_id = ?", (tenant_id,)
        ).fetchone()
    conn.close()
    if row is None:
        return 0, 0
    return row[0], row[2] if row[1] == day_start_ms(NOW) else 0


async def reserve(backends: Backends, n: int, quotas: Quotas, *, pages: int = 1, now: datetime = NOW) -> Refusal | None:
    tasks = TaskStore(backends.kv)
    return await backends.quotas.reserve(TENANT, task_id(n), pages=pages, quotas=quotas, now=now, tasks=tasks)


async def test_concurrency_counts_reserved_tasks_until_they_are_released(backends: Backends) -> None:
    tasks = TaskStore(backends.kv)
    quotas = Quotas(max_concurrent_tasks=2, max_pages_per_day=0)
    assert await reserve(backends, 1, quotas) is None
    assert await reserve(backends, 2, quotas) is None
    assert await reserve(backends, 3, quotas) == Refusal(CONCURRENT_TASKS, 2)
    assert await backends.quotas.reserve("tn_other", task_id(3), pages=1, quotas=quotas, now=NOW, tasks=tasks) is None
    await backends.quotas.release(TENANT, task_id(1))
    await backends.quotas.release(TENANT, task_id(1))  # idempotent: frees one place, not two
    assert await reserve(backends, 3, quotas) is None
    assert await reserve(backends, 4, quotas) == Refusal(CONCURRENT_TASKS, 2)


async def test_pages_per_day_sum_the_days_reservations(backends: Backends) -> None:
    tasks = TaskStore(backends.kv)
    quotas = Quotas(max_concurrent_tasks=0, max_pages_per_day=10)
    yesterday = NOW - timedelta(days=1)
    for n, (pages, when) in enumerate([(10, yesterday), (6, NOW)]):
        assert await reserve(backends, n, quotas, pages=pages, now=when) is None
        request = ScrapeRequest.model_validate(
            {"url": "https://example.com/", "knowledge_base_id": "kb", "limit": pages}
        )
        await tasks.create(Task(task_id=task_id(n), tenant_id=TENANT, request=request, created_at=when))
    assert await reserve(backends, 7, quotas, pages=5) == Refusal(PAGES_PER_DAY, 6)
    assert await reserve(backends, 8, quotas, pages=4) is None  # exactly fills the day (its index key is not written)


async def test_at_the_limit_a_task_that_ended_without_release_frees_its_place(backends: Backends) -> None:
    tasks = TaskStore(backends.kv)
    quotas = Quotas(max_concurrent_tasks=1, max_pages_per_day=0)
    request = ScrapeRequest.model_validate({"url": "https://example.com/", "knowledge_base_id": "kb"})
    task = Task(task_id=task_id(1), tenant_id=TENANT, request=request, status=TaskStatus.RUNNING)
    assert await reserve(backends, 1, quotas) is None
    await tasks.save(task)
    assert await reserve(backends, 2, quotas) == Refusal(CONCURRENT_TASKS, 1)  # running: it keeps its place
    task.status = TaskStatus.COMPLETED
    await tasks.save(task)  # ... and the consumer died before releasing it
    assert await reserve(backends, 2, quotas) is None


async def test_sqlite_ledger_is_exact_under_two_concurrent_writers(tmp_path: Path) -> None:
    """Two clients of one database file (two writer connections, as two processes have): of 60 reservations
    racing for 25 places, exactly 25 pass."""
    path = tmp_path / "ledger.sqlite3"
    clients = [open_sqlite_backends(path, visibility_timeout_s=30, max_retries=1) for _ in range(2)]
    try:
        assert all(isinstance(client.quotas, SqliteQuotaLedger) for client in clients)
        quotas = Quotas(max_concurrent_tasks=25, max_pages_per_day=1000)
        outcomes = await asyncio.gather(*(reserve(clients[n % 2], n, quotas, pages=3) for n in range(60)))
        assert sum(outcome is None for outcome in outcomes) == 25
        assert {o.quota for o in outcomes if o is not None} == {CONCURRENT_TASKS}
        assert usage(path, TENANT) == (25, 75)
        await asyncio.gather(*(clients[1].quotas.release(TENANT, task_id(n)) for n in range(60)))
        assert usage(path, TENANT) == (0, 75)  # the day's pages stay reserved
    finally:
        for client in clients:
            await client.aclose()


async def test_sqlite_ledger_frees_a_place_held_past_the_marker_lifetime(tmp_path: Path) -> None:
    backends = open_sqlite_backends(tmp_path / "ledger.sqlite3", visibility_timeout_s=30, max_retries=1)
    try:
        quotas = Quotas(max_concurrent_tasks=1, max_pages_per_day=0)
        long_ago = NOW - timedelta(seconds=ACTIVE_MARKER_TTL_S + 60)
        assert await reserve(backends, 1, quotas, now=long_ago) is None  # its task record is gone too
        assert await reserve(backends, 2, quotas, now=NOW - timedelta(days=1)) == Refusal(CONCURRENT_TASKS, 1)
        assert await reserve(backends, 2, quotas) is None
    finally:
        await backends.aclose()


async def test_upgrading_a_version_1_database_adopts_its_active_markers(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:  # a database as scrapeq's schema version 1 left it
        for statement in _SCHEMA_V1:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        markers = [keys.active_task(TENANT, task_id(n)) for n in range(3)] + [keys.active_task("tn_b", task_id(9))]
        rows = [(key, "1", None, None) for key in [*markers, keys.task(TENANT, task_id(1))]]
        conn.executemany("INSERT INTO kv VALUES (?, ?, ?, ?)", rows)
    conn.close()
    backends = open_sqlite_backends(path, visibility_timeout_s=30, max_retries=1)
    try:
        await backends.ping()  # opening the database upgrades it
        ledger = backends.quotas
        assert isinstance(ledger, SqliteQuotaLedger)
        assert usage(path, TENANT) == (3, 0)
        assert usage(path, "tn_b") == (1, 0)
        assert [info.name for info in (await backends.kv.list()).keys] == [keys.task(TENANT, task_id(1))]
        await ledger.release(TENANT, task_id(0))
        assert usage(path, TENANT) == (2, 0)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()
    finally:
        await backends.aclose()

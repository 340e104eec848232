"""The quota ledger of the embedded SQLite backend: exact counters, checked and updated in one transaction."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from functools import partial

from shared.backends.sqlite.store import SqliteKV
from shared.stores.quotas import (
    ACTIVE_MARKER_TTL_S,
    CONCURRENT_TASKS,
    MAX_MARKER_CHECKS,
    PAGES_PER_DAY,
    Quotas,
    Refusal,
    TaskLookup,
    day_start_ms,
)

_USAGE = "SELECT active, day_ms, day_pages FROM quota_usage WHERE tenant_id = ?"
_SET_USAGE = """
INSERT INTO quota_usage (tenant_id, active, day_ms, day_pages) VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id)
DO UPDATE SET active = excluded.active, day_ms = excluded.day_ms, day_pages = excluded.day_pages
"""


def _reserve(
    conn: sqlite3.Connection, tenant_id: str, task_id: str, pages: int, quotas: Quotas, day: int, now_s: float
) -> Refusal | None:
    row = conn.execute(_USAGE, (tenant_id,)).fetchone()
    active, used = (0, 0) if row is None else (row[0], row[2] if row[1] == day else 0)
    if quotas.max_pages_per_day and used + pages > quotas.max_pages_per_day:
        return Refusal(PAGES_PER_DAY, used)
    if quotas.max_concurrent_tasks and active >= quotas.max_concurrent_tasks:
        return Refusal(CONCURRENT_TASKS, active)
    insert = "INSERT OR IGNORE INTO quota_active (tenant_id, task_id, reserved_at, pages) VALUES (?, ?, ?, ?)"
    added = conn.execute(insert, (tenant_id, task_id, now_s, pages)).rowcount
    conn.execute(_SET_USAGE, (tenant_id, active + added, day, used + pages))
    return None


def _release(conn: sqlite3.Connection, tenant_id: str, task_id: str, used_pages: int | None) -> None:
    sql = "DELETE FROM quota_active WHERE tenant_id = ? AND task_id = ? RETURNING reserved_at, pages"
    row = conn.execute(sql, (tenant_id, task_id)).fetchone()
    if row is None:
        return  # released before (or never reserved): nothing to give back twice
    unused = 0 if used_pages is None else max(0, int(row[1]) - used_pages)
    day = day_start_ms(datetime.fromtimestamp(float(row[0]), UTC))
    conn.execute(
        "UPDATE quota_usage SET active = max(active - 1, 0), "
        "day_pages = CASE WHEN day_ms = ? THEN max(day_pages - ?, 0) ELSE day_pages END WHERE tenant_id = ?",
        (day, unused, tenant_id),
    )


class SqliteQuotaLedger:
    """The `QuotaLedger` of a `SqliteKV`'s database.

    `quota_active` holds a row per task with a place in its tenant's concurrency; `quota_usage` holds per tenant
    the number of those rows and the pages reserved on the current UTC day. A reservation reads the tenant's row
    and writes both in one write transaction (with the writes of other requests, by group commit), so no two
    submits, in this process or another, can both take the last place, and a submit costs the same whether the
    tenant has ten tasks queued or a hundred thousand.
    """

    def __init__(self, kv: SqliteKV) -> None:
        self.kv = kv

    async def reserve(
        self, tenant_id: str, task_id: str, *, pages: int, quotas: Quotas, now: datetime, tasks: TaskLookup
    ) -> Refusal | None:
        attempt = partial(_reserve, tenant_id=tenant_id, task_id=task_id, pages=pages, quotas=quotas,
                          day=day_start_ms(now), now_s=now.timestamp())  # fmt: skip
        refusal = await self.kv.write_fn(attempt)
        if (
            refusal is not None
            and refusal.quota == CONCURRENT_TASKS
            and await self._release_ended(tenant_id, now, tasks)
        ):
            refusal = await self.kv.write_fn(attempt)
        return refusal

    async def release(self, tenant_id: str, task_id: str, *, used_pages: int | None = None) -> None:
        await self.kv.write_fn(partial(_release, tenant_id=tenant_id, task_id=task_id, used_pages=used_pages))

    async def _release_ended(self, tenant_id: str, now: datetime, tasks: TaskLookup) -> bool:
        """At the limit: free the places of tasks that ended without releasing theirs (a crash after the final
        save), oldest first; whether any was freed."""
        sql = "SELECT task_id, reserved_at FROM quota_active WHERE tenant_id = ? ORDER BY reserved_at LIMIT ?"
        freed, lapsed_before = False, now.timestamp() - ACTIVE_MARKER_TTL_S
        for task_id, reserved_at in self.kv.read(sql, (tenant_id, MAX_MARKER_CHECKS)):
            if reserved_at < lapsed_before or await tasks.has_ended(tenant_id, task_id):
                await self.release(tenant_id, task_id)
                freed = True
        return freed

"""The usage ledger of the embedded SQLite backend: exact counters, one additive row per tenant, hour and name."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime

from shared.backends.sqlite.store import SqliteKV
from shared.stores.usage import Counts, hour_start

_ADD = """
INSERT INTO usage_counters (tenant_id, hour_ms, name, value) VALUES (?, ?, ?, ?)
ON CONFLICT (tenant_id, hour_ms, name) DO UPDATE SET value = usage_counters.value + excluded.value
"""
_HOURS = "SELECT hour_ms, name, value FROM usage_counters WHERE tenant_id = ? AND hour_ms >= ? AND hour_ms < ?"


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class SqliteUsageLedger:
    """The `UsageLedger` of a `SqliteKV`'s database (table `usage_counters`).

    An add is one upsert per counter that adds to the stored value inside the write transaction (group-committed
    with the other writes of its moment), so adds racing each other, in this process or another, all count.
    """

    def __init__(self, kv: SqliteKV) -> None:
        self.kv = kv

    async def add(self, tenant_id: str, counts: Mapping[str, int], *, at: datetime) -> None:
        hour_ms = _ms(hour_start(at))
        rows = [(tenant_id, hour_ms, name, int(value)) for name, value in counts.items() if value]

        def apply(conn: sqlite3.Connection) -> int:
            return conn.executemany(_ADD, rows).rowcount

        if rows:
            await self.kv.write_fn(apply)

    async def hours(self, tenant_id: str, start: datetime, end: datetime) -> dict[datetime, Counts]:
        found: dict[datetime, Counts] = {}
        for hour_ms, name, value in self.kv.read(_HOURS, (tenant_id, _ms(hour_start(start)), _ms(end))):
            hour = datetime.fromtimestamp(hour_ms / 1000, UTC)
            found.setdefault(hour, {})[name] = int(value)
        return found

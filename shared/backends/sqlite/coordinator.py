"""The coordination port on the embedded SQLite file: each operation of the core in one write transaction, exact
across every process on the data dir (table `coordination`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from shared.backends.sqlite.store import SqliteKV
from shared.coordination import RunnerCoordinator, apply
from shared.ports import Clock


class ConnectionState:
    """`State` over the `coordination` table, through the connection of the transaction the core runs in."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM coordination WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        self.conn.execute("REPLACE INTO coordination (key, value) VALUES (?, ?)", (key, value))

    def delete(self, key: str) -> None:
        self.conn.execute("DELETE FROM coordination WHERE key = ?", (key,))

    def items(self, prefix: str) -> Iterator[tuple[str, str]]:
        # The keys from `prefix` up to the first past it (its last character raised by one): an index range.
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        sql = "SELECT key, value FROM coordination WHERE key >= ? AND key < ? ORDER BY key"
        for key, value in self.conn.execute(sql, (prefix, end)):
            yield str(key), str(value)


class SqliteRunner:
    """Runs each operation as one write of the `SqliteKV`'s group commit (so in its transaction)."""

    def __init__(self, kv: SqliteKV, *, clock: Clock) -> None:
        self.kv = kv
        self.clock = clock

    async def run(self, scope: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        return await self.kv.write_fn(lambda conn: apply(ConnectionState(conn), now, op, args))


def sqlite_coordinator(kv: SqliteKV, *, clock: Clock) -> RunnerCoordinator:
    return RunnerCoordinator(SqliteRunner(kv, clock=clock))

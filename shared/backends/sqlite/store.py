"""KV and queues in one embedded SQLite file shared by several processes (WAL); the event loop never waits
for another process (see `db.SqliteClient`). The tenants' quota counters are `sqlite.ledger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from shared.backends.base import QueueStats
from shared.backends.kvlimits import (
    check_delay,
    check_key,
    check_list_limit,
    check_receive,
    check_value,
    decode_cursor,
    encode_body,
    encode_cursor,
    encode_metadata,
    expiry_for,
    new_message_id,
    prefix_end,
)
from shared.backends.sqlite.db import Params, SqliteClient, connect_reader, immediate
from shared.backends.wakeup import ProcessBell, Wakeup, receive_waiting
from shared.errors import StorageError
from shared.ports import MAX_LIST_LIMIT, Clock, JsonObject, KeyInfo, KVWrite, ListResult, Message

logger = logging.getLogger(__name__)

_Delivery = tuple[list[Message], float | None, int]  # messages, next visible time, dead-lettered count


def _log_failure(future: asyncio.Future[int]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        logger.warning("expired keys not purged: %s", exc)


def _kv_list_query(prefix: str, after: str | None, limit: int, now: float) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = ["(expires_at IS NULL OR expires_at > ?)"]
    params: list[object] = [now]
    for clause, value in (("key >= ?", prefix or None), ("key > ?", after), ("key < ?", prefix_end(prefix))):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    sql = f"SELECT key, expires_at, metadata FROM kv WHERE {' AND '.join(clauses)} ORDER BY key LIMIT ?"
    return sql, (*params, limit)


_UPSERT = """
INSERT INTO kv (key, value, expires_at, metadata) VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE
SET value = excluded.value, expires_at = excluded.expires_at, metadata = excluded.metadata
"""


# Insert, or take over an expired row; a live row is left alone (row count 0).
_RESERVE = """
INSERT INTO kv (key, value, expires_at, metadata) VALUES (?, ?, ?, NULL)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, metadata = NULL
WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?
"""
_LIVE = "(expires_at IS NULL OR expires_at > ?)"


class SqliteKV(SqliteClient):
    """Workers KV over the `kv` table. Expired rows are invisible at once and deleted lazily.

    Reads run inline on a second, read-only connection of the event loop's thread: in WAL mode a reader never
    waits for a writer, and a point read costs far less than the hop to the writer's thread would. Writes
    keep their thread, since they may wait for another process's write lock.
    """

    PURGE_EVERY_PUTS = 256
    PURGE_BATCH = 1000

    def __init__(self, path: Path, *, clock: Clock = time.time) -> None:
        super().__init__(path, clock=clock)
        self._puts = 0
        self._reader: sqlite3.Connection | None = None

    def read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        if self._closed:
            raise StorageError(f"SQLite backend {self.path} is closed")
        try:
            if self._reader is None:
                self._reader = connect_reader(self.path)
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite {self.path}: {exc}") from exc

    async def get(self, key: str) -> str | None:
        check_key(key)
        sql = "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
        rows = self.read(sql, (key, self._clock()))
        return str(rows[0][0]) if rows else None

    async def put(
        self, key: str, value: str, *, ttl_s: float | None = None, metadata: JsonObject | None = None
    ) -> None:
        check_key(key)
        check_value(value)
        now = self._clock()
        row = (key, value, expiry_for(ttl_s, now), encode_metadata(metadata))
        self._count_puts(1, now)
        await self.write(_UPSERT, row)

    async def put_many(self, writes: Sequence[KVWrite]) -> None:
        """One write of the batch (one future to wait for, however many keys), so in one transaction."""
        now = self._clock()
        rows = []
        for write in writes:
            check_key(write.key)
            check_value(write.value)
            rows.append((write.key, write.value, expiry_for(write.ttl_s, now), encode_metadata(write.metadata)))
        if not rows:
            return
        self._count_puts(len(rows), now)
        await self.write_fn(lambda conn: conn.executemany(_UPSERT, rows).rowcount)

    def _count_puts(self, puts: int, now: float) -> None:
        before, self._puts = self._puts, self._puts + puts
        if before // self.PURGE_EVERY_PUTS != self._puts // self.PURGE_EVERY_PUTS:
            # Not awaited by the put: it only has to happen, and it goes with the next batch of writes.
            purge = "DELETE FROM kv WHERE key IN (SELECT key FROM kv WHERE expires_at <= ? LIMIT ?)"
            self._batch_only(purge, (now, self.PURGE_BATCH))

    def _batch_only(self, sql: str, params: Params) -> None:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_log_failure)
        self._batch.append(((sql, params), future))

    async def delete(self, key: str) -> None:
        check_key(key)
        await self.write("DELETE FROM kv WHERE key = ?", (key,))

    # --- Reservations: each a single statement, so exact across every process on the file (one writer at a time)
    async def reserve(self, key: str, value: str, *, ttl_s: float) -> str | None:
        check_key(key)
        check_value(value)
        while True:
            now = self._clock()
            if await self.write(_RESERVE, (key, value, expiry_for(ttl_s, now), now)):
                return None
            held = await self.get(key)
            if held is not None:  # else it expired or was released since: try again
                return held

    async def replace(self, key: str, expected: str, value: str, *, ttl_s: float) -> bool:
        check_key(key)
        check_value(value)
        now = self._clock()
        sql = f"UPDATE kv SET value = ?, expires_at = ? WHERE key = ? AND value = ? AND {_LIVE}"
        return bool(await self.write(sql, (value, expiry_for(ttl_s, now), key, expected, now)))

    async def release(self, key: str, expected: str) -> None:
        check_key(key)
        await self.write("DELETE FROM kv WHERE key = ? AND value = ?", (key, expected))

    async def list(self, *, prefix: str = "", limit: int = MAX_LIST_LIMIT, cursor: str | None = None) -> ListResult:
        check_list_limit(limit)
        after = None if cursor is None else decode_cursor(cursor)
        # One row more than asked tells whether another page exists.
        sql, params = _kv_list_query(prefix, after, limit + 1, self._clock())
        rows = self.read(sql, params)
        keys = [KeyInfo(key, exp, None if meta is None else json.loads(meta)) for key, exp, meta in rows]
        if len(keys) <= limit:
            return ListResult(keys, list_complete=True)
        return ListResult(keys[:limit], list_complete=False, cursor=encode_cursor(keys[limit - 1].name))

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await super().aclose()


_DELIVER = """
UPDATE queue_messages
SET attempts = attempts + 1, lease = lower(hex(randomblob(16))), visible_at = :lease_until
WHERE seq IN (
    SELECT seq FROM queue_messages INDEXED BY queue_ready
    WHERE queue = :queue AND visible_at <= :now ORDER BY visible_at, seq LIMIT :limit
)
RETURNING seq, id, body, attempts, lease
"""
# A message whose lease lapsed after its last allowed delivery has failed that delivery too.
_LAPSED = (
    "queue_messages INDEXED BY queue_leased",
    "WHERE queue = :queue AND lease IS NOT NULL AND visible_at <= :now AND attempts > :max_retries",
)
# Only the delivery that holds the current lease may ack or retry.
_FENCED = ("queue_messages", "WHERE id = :id AND queue = :queue AND lease = :lease")
_COUNT_READY = "SELECT count(*), sum(visible_at <= :now) FROM queue_messages WHERE queue = :queue"
_COUNT_LEASED = f"SELECT count(*) FROM {_LAPSED[0]} WHERE queue = :queue AND lease IS NOT NULL AND visible_at > :now"


class SqliteQueue(SqliteClient):
    """A queue in the `queue_messages` table: leases, retries, and dead-lettering into another queue of
    the same database (the row just changes queue, keeping id and body)."""

    def __init__(
        self,
        path: Path,
        name: str,
        *,
        clock: Clock = time.time,
        visibility_timeout_s: float,
        max_retries: int,
        dead_letter: SqliteQueue | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        if visibility_timeout_s <= 0 or max_retries < 0 or poll_interval_s <= 0:
            raise ValueError("visibility_timeout_s and poll_interval_s must be > 0, max_retries ≥ 0")
        if dead_letter is not None and dead_letter.path.resolve() != Path(path).resolve():
            raise ValueError("the dead-letter queue must live in the same database file")
        super().__init__(path, clock=clock)
        self.name = name
        self.max_retries = max_retries
        self._visibility_timeout_s = visibility_timeout_s
        self._dead_letter = dead_letter
        self._poll_interval_s = poll_interval_s
        self._wakeup = Wakeup()
        # Receivers in other processes are rung after each send; polling (poll_interval_s) is only the fallback.
        self._bell = ProcessBell(Path(f"{path}.wake") / name, self._wakeup.fire)

    async def send(self, body: JsonObject, *, delay_s: float = 0) -> None:
        text = encode_body(body)
        check_delay(delay_s)
        now = self._clock()
        row = (new_message_id(), self.name, text, now + delay_s, now)
        sql = "INSERT INTO queue_messages (id, queue, body, visible_at, enqueued_at) VALUES (?, ?, ?, ?, ?)"
        await self.write(sql, row)
        if delay_s == 0:
            self._wakeup.fire()
            self._bell.ring_soon()

    async def aclose(self) -> None:
        self._bell.close()
        await super().aclose()

    async def receive(self, *, max_messages: int, wait_s: float = 0) -> list[Message]:
        check_receive(max_messages, wait_s)
        if wait_s > 0:
            self._bell.listen()

        async def take() -> tuple[list[Message], float | None]:
            return await self._take(max_messages)

        return await receive_waiting(
            take, self._wakeup, wait_s=wait_s, poll_interval_s=self._poll_interval_s, clock=self._clock
        )

    async def _take(self, max_messages: int) -> tuple[list[Message], float | None]:
        future = self._submit(self._deliver, max_messages, self._clock())
        try:
            messages, next_visible, dead_lettered = await self._wait(future)
        except asyncio.CancelledError:
            # A delivery already running on the thread commits anyway: hand its messages back rather than
            # leave them leased (and counted as an attempt) for a whole visibility timeout.
            future.add_done_callback(self._release_orphans)
            raise
        if dead_lettered and self._dead_letter is not None:
            self._dead_letter._wakeup.fire()
        return messages, next_visible

    def _deliver(self, conn: sqlite3.Connection, max_messages: int, now: float) -> _Delivery:
        params = {"queue": self.name, "now": now, "max_retries": self.max_retries}
        with immediate(conn):
            dead_lettered = self._retire(conn, _LAPSED, params)
            deliver = {**params, "lease_until": now + self._visibility_timeout_s, "limit": max_messages}
            rows = conn.execute(_DELIVER, deliver).fetchall()
            next_visible = None
            if not rows:
                sql = "SELECT min(visible_at) FROM queue_messages WHERE queue = ?"
                next_visible = conn.execute(sql, (self.name,)).fetchone()[0]
        rows.sort()  # RETURNING order is unspecified; hand out oldest first
        messages = [Message(row[1], json.loads(row[2]), row[3], row[4]) for row in rows]
        return messages, next_visible, dead_lettered

    def _retire(self, conn: sqlite3.Connection, target: tuple[str, str], params: dict[str, Any]) -> int:
        """Move the messages `target` selects to the dead-letter queue, or drop them if there is none."""
        table, where = target
        if self._dead_letter is None:
            sql = f"DELETE FROM {table} {where} RETURNING id"
        else:
            sql = (
                f"UPDATE {table} SET queue = :dead_letter, attempts = 0, lease = NULL, visible_at = :now"
                f" {where} RETURNING id"
            )
            params = {**params, "dead_letter": self._dead_letter.name}
        ids = [row[0] for row in conn.execute(sql, params).fetchall()]
        fate = "dropped (no dead-letter queue)" if self._dead_letter is None else f"moved to {self._dead_letter.name}"
        for message_id in ids:
            logger.warning(
                "message %s after its last retry", fate, extra={"queue": self.name, "message_id": message_id}
            )
        return len(ids)

    def _release_orphans(self, future: Future[_Delivery]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        messages = future.result()[0]
        rows = [{"id": m.id, "queue": self.name, "lease": m.lease, "now": self._clock()} for m in messages]
        sql = f"UPDATE {_FENCED[0]} SET attempts = attempts - 1, lease = NULL, visible_at = :now {_FENCED[1]}"
        with contextlib.suppress(RuntimeError, StorageError):  # closed meanwhile: the leases lapse instead
            self._submit(lambda conn: conn.executemany(sql, rows))

    def _fenced(self, message: Message) -> dict[str, Any]:
        return {"id": message.id, "queue": self.name, "lease": message.lease, "now": self._clock()}

    async def ack(self, message: Message) -> None:
        sql = f"DELETE FROM {_FENCED[0]} {_FENCED[1]}"
        params = self._fenced(message)
        deleted = await self.write(sql, params)
        if not deleted:
            logger.debug("stale ack ignored", extra={"queue": self.name, "message_id": message.id})

    async def retry(self, message: Message, *, delay_s: float = 0) -> None:
        check_delay(delay_s)
        params = self._fenced(message)
        # The lease fence guarantees `message.attempts` is the stored count.
        if message.attempts > self.max_retries:
            if await self._run(self._retire, _FENCED, params) and self._dead_letter is not None:
                self._dead_letter._wakeup.fire()
            return
        sql = f"UPDATE {_FENCED[0]} SET lease = NULL, visible_at = :visible_at {_FENCED[1]}"
        params["visible_at"] = params["now"] + delay_s
        if not await self.write(sql, params):
            logger.debug("stale retry ignored", extra={"queue": self.name, "message_id": message.id})
        elif delay_s == 0:
            self._wakeup.fire()

    async def stats(self) -> QueueStats:
        """Counts of visible, leased and delayed messages (for `/health`); each count reads only an index."""
        return await self._run(self._stats, self._clock())

    def _stats(self, conn: sqlite3.Connection, now: float) -> QueueStats:
        params = {"queue": self.name, "now": now}
        total, visible = conn.execute(_COUNT_READY, params).fetchone()
        (leased,) = conn.execute(_COUNT_LEASED, params).fetchone()
        visible = visible or 0  # sum() of no rows is NULL
        return QueueStats(visible=visible, leased=leased, delayed=total - visible - leased)

    async def size(self) -> int:
        """Messages held, in any state."""
        sql = "SELECT count(*) FROM queue_messages WHERE queue = ?"
        return int(await self._run(lambda conn: conn.execute(sql, (self.name,)).fetchone()[0]))

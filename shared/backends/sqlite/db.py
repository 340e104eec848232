"""The SQLite layer under the KV and the queues: schema and migration, connections (WAL), and `SqliteClient`,
whose writes are group-committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from shared.errors import StorageError
from shared.ports import Clock

logger = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
Params = tuple[Any, ...] | dict[str, Any]
#: A write: one statement (its outcome is the row count), or a function of the connection that may run several
#: (its outcome is what it returns); either way inside the batch's transaction.
_Write = tuple[str, Params] | Callable[[sqlite3.Connection], Any]

BUSY_TIMEOUT_MS = 10_000
# WAL readers only wait in rare moments (recovery after a crash); the event loop must not wait long then.
READER_BUSY_TIMEOUT_MS = 200
#: Commits on the loop's thread between two WAL checkpoints on the client's thread (SQLite's automatic
#: checkpoint runs at 1000 pages of WAL; a commit of a submit writes about ten).
CHECKPOINT_EVERY_COMMITS = 100
_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS kv (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL,
        expires_at REAL,
        metadata TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS queue_messages (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        queue TEXT NOT NULL,
        body TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        visible_at REAL NOT NULL,
        lease TEXT,
        enqueued_at REAL NOT NULL
    )""",
    # Receive reads this index from its start: the oldest visible messages, whatever the backlog.
    "CREATE INDEX IF NOT EXISTS queue_ready ON queue_messages (queue, visible_at)",
    # Only delivered messages: finding lapsed leases never walks the waiting backlog.
    "CREATE INDEX IF NOT EXISTS queue_leased ON queue_messages (queue, visible_at) WHERE lease IS NOT NULL",
)
# The quota ledger (`sqlite.ledger`): one row per task holding a place in its tenant's concurrency, and per tenant
# the counts a submit checks, kept in step with those rows in the same transactions.
_SCHEMA_V2 = (
    """CREATE TABLE IF NOT EXISTS quota_active (
        tenant_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        reserved_at REAL NOT NULL,
        PRIMARY KEY (tenant_id, task_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS quota_active_age ON quota_active (tenant_id, reserved_at)",
    """CREATE TABLE IF NOT EXISTS quota_usage (
        tenant_id TEXT PRIMARY KEY NOT NULL,
        active INTEGER NOT NULL,
        day_ms INTEGER NOT NULL,
        day_pages INTEGER NOT NULL
    ) WITHOUT ROWID""",
)

# The one row a health check rewrites: a read would pass on a full or read-only disk.
_SCHEMA_V3 = ("CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at REAL NOT NULL)",)
# Tenants' usage (`sqlite.usage_ledger`): one additive counter per tenant, UTC hour and name.
_SCHEMA_V4 = (
    """CREATE TABLE IF NOT EXISTS usage_counters (
        tenant_id TEXT NOT NULL,
        hour_ms INTEGER NOT NULL,
        name TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, hour_ms, name)
    ) WITHOUT ROWID""",
)
# The coordination port's state (`sqlite.coordinator`): JSON values by key, as a Durable Object's storage holds them.
# The pages each place reserved (`sqlite.ledger`), so a task's end can give back those it did not use. Places held
# across the upgrade reserved 0: they give nothing back.
_SCHEMA_V6 = ("ALTER TABLE quota_active ADD COLUMN pages INTEGER NOT NULL DEFAULT 0",)
_SCHEMA_V5 = (
    "CREATE TABLE IF NOT EXISTS coordination (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID",
)


def _connect(path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    # Autocommit: every statement commits on its own unless we open a transaction with `immediate`.
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        conn.execute("PRAGMA journal_mode = WAL")
        # WAL with synchronous=NORMAL: a commit is in the WAL file (in the OS page cache) before it returns,
        # so SIGKILL of any process loses nothing committed and the next open recovers; only an OS crash or a
        # power cut can lose the last few commits, never corrupt the file.
        conn.execute("PRAGMA synchronous = NORMAL")
        # Deleted rows are overwritten with zeros as their pages are freed: an erasure leaves no text in the file.
        conn.execute("PRAGMA secure_delete = ON")
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:  # a read: it takes no lock
            _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_inline_writer(path: Path) -> sqlite3.Connection:
    """A connection for writes on the event loop's thread: it never waits for a lock (`busy_timeout` 0) and
    never checkpoints the WAL (that copies and syncs pages: `SqliteClient` has its thread do it)."""
    conn = _connect(path, busy_timeout_ms=0)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    """A connection for reads on the event loop's thread: it may never write, and never waits long."""
    conn = _connect(path)  # the schema exists before the first read
    conn.execute("PRAGMA query_only = ON")
    conn.execute(f"PRAGMA busy_timeout = {READER_BUSY_TIMEOUT_MS}")
    return conn


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction holding the write lock from the start: no two processes update the same rows."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _adopt_active_markers(conn: sqlite3.Connection) -> None:
    """Version 1 counted a tenant's running tasks from KV keys `tenant:{t}:active:{task}`: move them into the
    ledger, so tasks in flight across the upgrade keep their places (the day's pages start from zero)."""
    rows = conn.execute("SELECT key FROM kv WHERE key GLOB 'tenant:*:active:*'").fetchall()
    for (key,) in rows:
        parts = key.split(":")
        if len(parts) == 4 and parts[2] == "active":
            conn.execute(
                "INSERT OR IGNORE INTO quota_active VALUES (?, ?, strftime('%s', 'now'))", (parts[1], parts[3])
            )
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))
    conn.execute("INSERT INTO quota_usage SELECT tenant_id, count(*), 0, 0 FROM quota_active GROUP BY tenant_id")


# PRAGMA user_version → what brings a database from the version before it up to that one.
_MIGRATIONS: tuple[tuple[int, tuple[str, ...], Callable[[sqlite3.Connection], None] | None], ...] = (
    (1, _SCHEMA_V1, None),
    (2, _SCHEMA_V2, _adopt_active_markers),
    (3, _SCHEMA_V3, None),
    (4, _SCHEMA_V4, None),
    (5, _SCHEMA_V5, None),
    (6, _SCHEMA_V6, None),
)
SCHEMA_VERSION = _MIGRATIONS[-1][0]


def _migrate(conn: sqlite3.Connection) -> None:
    with immediate(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(f"database schema {version} is newer than this scrapeq ({SCHEMA_VERSION})")
        for target, statements, step in _MIGRATIONS:
            if version < target:
                for statement in statements:
                    conn.execute(statement)
                if step is not None:
                    step(conn)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class SqliteClient:
    """One connection on one thread (opened on first use, so opening never blocks the event loop), and one on
    the loop's thread for the writes that need not wait.

    Writes are group-committed on the event loop's thread while the write lock is free (it is never waited for
    there), else on the client's own thread, which may wait for another process's transaction.
    """

    def __init__(self, path: Path, *, clock: Clock) -> None:
        self.path = Path(path)
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scrapeq-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._inline_commits = 0
        self._closed = False
        self._batch: list[tuple[_Write, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def _submit(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]:
        if self._closed:
            raise StorageError(f"SQLite backend {self.path} is closed")

        def job() -> T:
            if self._conn is None:
                self._conn = _connect(self.path)
            return fn(self._conn, *args, **kwargs)

        return self._executor.submit(job)

    async def _wait(self, future: Future[T]) -> T:
        try:
            return await asyncio.wrap_future(future)
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite {self.path}: {exc}") from exc

    async def _run(self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._wait(self._submit(fn, *args, **kwargs))

    async def write(self, sql: str, params: Params) -> int:
        """One write statement, committed before this returns; its row count.

        Group commit: the writes of one turn of the event loop (and those arriving while a batch waits for the
        lock) go in one transaction with one commit, each with its own outcome: under load a request's several
        writes cost about as much as one. The batch runs inline when the write lock is free: a hop to a thread
        and back costs more than a small transaction, and a thread that needs the GIL after each statement
        waits for the busy event loop to yield it.
        """
        return int(await self._enqueue((sql, params)))

    async def write_fn(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` in a transaction of its own or of its batch (group commit as for `write`); what it
        returns. It may run twice: if its batch fails, each write runs again alone."""
        result: T = await self._enqueue(fn)
        return result

    async def _enqueue(self, write: _Write) -> Any:
        if self._closed:
            raise StorageError(f"SQLite backend {self.path} is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batch.append((write, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                writes = [write for write, _ in batch]
                try:
                    outcomes = self._apply_inline(writes)
                    if outcomes is None:
                        outcomes = await self._run(_apply_writes, writes)
                except Exception as exc:  # the database could not be opened, or the thread is gone
                    outcomes = [exc] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller was cancelled; the write happened all the same
                        continue
                    if isinstance(outcome, sqlite3.Error):
                        future.set_exception(StorageError(f"SQLite {self.path}: {outcome}"))
                    elif isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._flusher = None

    def _apply_inline(self, writes: list[_Write]) -> list[Any] | None:
        """The batch in one transaction on the event loop's thread; None if it must go to the thread instead:
        another connection holds the write lock, or a write failed (the thread runs each alone, and waits)."""
        if self._inline is None:
            try:
                self._inline = connect_inline_writer(self.path)
            except sqlite3.Error:
                return None  # e.g. a migration under way elsewhere: the thread waits for it
        conn = self._inline
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return None
        try:
            outcomes = [_apply(conn, write) for write in writes]
            conn.execute("COMMIT")
        except Exception:  # rolled back whole: nothing of the batch happened
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return None
        self._inline_commits += 1
        if self._inline_commits % CHECKPOINT_EVERY_COMMITS == 0:
            self._checkpoint_soon()
        return outcomes

    def _checkpoint_soon(self) -> None:
        """Copy the WAL back into the database on the thread, as SQLite's automatic checkpoint would after a
        commit of the thread's connection; it waits for no reader or writer (PASSIVE)."""
        with contextlib.suppress(StorageError, RuntimeError):  # closing: the last connection to close does it
            future = self._submit(lambda conn: conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
            future.add_done_callback(_log_checkpoint_failure)

    async def scrub(self) -> None:
        """Copy the WAL into the database and truncate it to zero bytes: frames holding deleted rows' old
        content are gone from the disk (`secure_delete` already zeroed the freed pages). Readers of other
        processes may delay it; it is tried again a few times before giving up with StorageError."""

        def truncate(conn: sqlite3.Connection) -> None:
            for _ in range(50):
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return
                time.sleep(0.1)
            raise StorageError(f"SQLite {self.path}: the WAL could not be truncated (readers kept it busy)")

        await self._run(truncate)

    async def ping(self) -> None:
        """Open the database (creating the schema) and commit a small write; StorageError if that fails. A read
        would pass on a full or read-only disk, where every submit fails."""
        await self.write("REPLACE INTO health (id, checked_at) VALUES (1, ?)", (self._clock(),))

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._flusher is not None:
                await asyncio.shield(self._flusher)  # writes already accepted are committed first
            if self._inline is not None:
                self._inline.close()
                self._inline = None
            try:
                await self._wait(self._executor.submit(self._close))
            finally:
                self._executor.shutdown(wait=False)


def _log_checkpoint_failure(future: Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        logger.warning("WAL checkpoint failed: %s", exc)


def _apply_writes(conn: sqlite3.Connection, writes: list[_Write]) -> list[Any]:
    """Run `writes` in one transaction; if any fails, each on its own, so one bad write fails alone. Returns
    each write's outcome or error."""
    if len(writes) > 1:
        try:
            with immediate(conn):
                return [_apply(conn, write) for write in writes]
        except Exception:  # which one failed is found by running each alone
            pass
    return [_apply_alone(conn, write) for write in writes]


def _apply(conn: sqlite3.Connection, write: _Write) -> Any:
    if callable(write):
        return write(conn)
    sql, params = write
    return conn.execute(sql, params).rowcount


def _apply_alone(conn: sqlite3.Connection, write: _Write) -> Any:
    """One write, its outcome or its error; a function runs in a transaction of its own (a single statement
    needs none)."""
    try:
        if not callable(write):
            return _apply(conn, write)
        with immediate(conn):
            return write(conn)
    except Exception as exc:  # handed to the write's own caller
        return exc

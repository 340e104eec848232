"""How the SQLite client writes: a loop turn's writes in one transaction on the loop's thread while the lock is
free, each failure its own; a held lock sends them to the client's thread without stalling the loop; and the
WAL is checkpointed on that thread, never on the loop's."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.backends.sqlite import db as sqlitedb
from shared.backends.sqlite.store import SqliteKV


@pytest.fixture
async def kv(tmp_path: Path) -> AsyncIterator[SqliteKV]:
    store = SqliteKV(tmp_path / "writes.sqlite3")
    await store.ping()
    yield store
    await store.aclose()


def fail(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO kv (key, value) VALUES ('half', 'done')")
    raise ValueError("this write fails")


async def test_a_failing_write_fails_alone_and_its_batch_commits(kv: SqliteKV) -> None:
    puts = [kv.put(f"k{n:02d}", str(n)) for n in range(20)]
    outcomes = await asyncio.gather(*puts, kv.write_fn(fail), kv.write_fn(lambda conn: 42), return_exceptions=True)
    assert outcomes[:20] == [None] * 20
    assert isinstance(outcomes[20], ValueError)
    assert outcomes[21] == 42
    assert [info.name for info in (await kv.list()).keys] == [f"k{n:02d}" for n in range(20)]  # no "half"


async def test_a_held_write_lock_sends_writes_to_the_thread_and_the_loop_keeps_running(
    kv: SqliteKV, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "writes.sqlite3", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's transaction, say
    try:
        put = asyncio.create_task(kv.put("waiting", "yes"))
        started = time.perf_counter()
        for _ in range(30):
            await asyncio.sleep(0.01)
        assert time.perf_counter() - started < 1.0  # the loop never waited for the lock
        assert not put.done()
    finally:
        other.execute("COMMIT")
        other.close()
    await asyncio.wait_for(put, 5)
    assert await kv.get("waiting") == "yes"


async def test_the_wal_is_checkpointed_on_the_thread(
    kv: SqliteKV, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlitedb, "CHECKPOINT_EVERY_COMMITS", 5)
    database = tmp_path / "writes.sqlite3"
    empty = database.stat().st_size
    for n in range(40):
        await kv.put(f"k{n}", "x" * 4000)  # one commit each
    await kv._run(lambda conn: conn.execute("SELECT 1").fetchone())  # on the thread, after the checkpoints it was given
    assert kv._inline is not None
    assert kv._inline.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert database.stat().st_size - empty > 35 * 4000  # the pages reached the database file

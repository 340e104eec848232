"""SQLite backends under real processes: SIGKILL loses nothing that was acknowledged, concurrent receivers
never get the same message inside one lease, and a cancelled receive does not strand its messages."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from shared.backends.base import Backends
from shared.backends.factory import open_sqlite_backends
from shared.backends.sqlite.store import SqliteQueue

CHILD = Path(__file__).with_name("sqlite_child.py")
REPO = Path(__file__).resolve().parents[2]


async def spawn(*args: str, stdin: bool = False) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        *args,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )


async def kill_at_random_moment(proc: asyncio.subprocess.Process) -> tuple[list[int], float]:
    """Wait for the child to start working, SIGKILL it a random while later, return the numbers it printed."""
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 10)
    delay = random.uniform(0.05, 1.0)
    await asyncio.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    rest = await proc.stdout.read()
    assert await proc.wait() == -signal.SIGKILL
    text = (first + rest).decode()
    complete = text[: text.rfind("\n") + 1]  # a line cut by the kill was never fully reported
    return [int(line) for line in complete.splitlines()], delay


def open_after_crash(path: Path) -> Backends:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    return open_sqlite_backends(path, visibility_timeout_s=60, max_retries=3)


async def drain(backends: Backends) -> list[int]:
    seen: list[int] = []
    while messages := await backends.jobs.receive(max_messages=100):
        seen.extend(m.body["n"] for m in messages)
        for message in messages:
            await backends.jobs.ack(message)
    return seen


async def test_every_send_that_returned_survives_sigkill_of_the_sender(tmp_path: Path) -> None:
    db = tmp_path / "q.sqlite3"
    printed, delay = await kill_at_random_moment(await spawn("send", str(db), "1000000"))
    backends = open_after_crash(db)
    try:
        received = await drain(backends)
    finally:
        await backends.aclose()
    assert printed, "the child never got to send"
    context = f"killed after {delay:.3f} s, {len(printed)} sends reported"
    assert set(printed) <= set(received), context
    # At most the one send that committed just before the kill went unreported; nothing twice.
    assert len(received) == len(set(received)) <= len(printed) + 1, context


async def test_every_put_that_returned_survives_sigkill_of_the_writer(tmp_path: Path) -> None:
    db = tmp_path / "kv.sqlite3"
    printed, delay = await kill_at_random_moment(await spawn("put", str(db), "1000000"))
    backends = open_after_crash(db)
    try:
        values = [await backends.kv.get(f"k:{n:07d}") for n in printed]
        listed, cursor = [], None
        while True:
            page = await backends.kv.list(prefix="k:", cursor=cursor)
            listed.extend(page.keys)
            if page.list_complete:
                break
            cursor = page.cursor
    finally:
        await backends.aclose()
    assert printed, "the child never got to put"
    context = f"killed after {delay:.3f} s, {len(printed)} puts reported"
    assert values == [str(n) for n in printed], context
    assert [info.metadata for info in listed[: len(printed)]] == [{"n": n} for n in printed], context


async def test_two_processes_receiving_concurrently_get_each_message_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "q.sqlite3"
    backends = open_sqlite_backends(db, visibility_timeout_s=60, max_retries=3)
    try:
        for n in range(500):
            await backends.jobs.send({"n": n})
    finally:
        await backends.aclose()

    consumers = [await spawn("consume", str(db), "5", stdin=True) for _ in range(2)]
    for proc in consumers:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"ready\n"
    for proc in consumers:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    outputs = await asyncio.wait_for(asyncio.gather(*(proc.communicate() for proc in consumers)), 20)
    assert [proc.returncode for proc in consumers] == [0, 0]

    per_consumer = [[int(line) for line in out.decode().split()] for out, _ in outputs]
    counts = Counter(n for numbers in per_consumer for n in numbers)
    duplicates = sorted(n for n, count in counts.items() if count > 1)
    assert duplicates == [], f"delivered twice: {duplicates[:20]}"
    assert sorted(counts) == list(range(500)), f"split {[len(p) for p in per_consumer]}"

    backends = open_sqlite_backends(db, visibility_timeout_s=60, max_retries=3)
    try:
        assert await backends.jobs.size() == 0
    finally:
        await backends.aclose()


async def test_receive_cancelled_mid_delivery_hands_the_messages_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backends = open_sqlite_backends(tmp_path / "q.sqlite3", visibility_timeout_s=60, max_retries=3)
    original = SqliteQueue._deliver
    delivering = threading.Event()

    def slow_deliver(self: SqliteQueue, conn: sqlite3.Connection, max_messages: int, now: float) -> Any:
        result = original(self, conn, max_messages, now)
        delivering.set()
        time.sleep(0.3)  # the delivery has committed; the caller is cancelled before it sees it
        return result

    try:
        await backends.jobs.send({"n": 1})
        monkeypatch.setattr(SqliteQueue, "_deliver", slow_deliver)
        receiving = asyncio.create_task(backends.jobs.receive(max_messages=10))
        await asyncio.to_thread(delivering.wait, 5)
        receiving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await receiving
        monkeypatch.setattr(SqliteQueue, "_deliver", original)
        [message] = await backends.jobs.receive(max_messages=10, wait_s=5)
        assert (message.body, message.attempts) == ({"n": 1}, 1)
    finally:
        await backends.aclose()


async def test_a_receiver_in_another_process_wakes_at_once_on_send_without_polling(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    backends = open_sqlite_backends(path, visibility_timeout_s=60, max_retries=3)
    await backends.ping()
    child = await spawn("wait", str(path), "5")
    assert child.stdout is not None
    assert (await asyncio.wait_for(child.stdout.readline(), 10)).strip() == b"ready"
    lags = []
    for n in range(5):
        await asyncio.sleep(0.05)
        sent = time.time()
        await backends.jobs.send({"n": n})
        got, at = (await asyncio.wait_for(child.stdout.readline(), 10)).split()
        assert int(got) == n
        lags.append(float(at) - sent)
    await child.wait()
    await backends.aclose()
    # The fallback poll runs once a second: every message arriving well under that was rung, not polled.
    assert max(lags) < 0.25, lags


async def test_concurrent_writes_share_transactions_keep_their_order_and_fail_alone(tmp_path: Path) -> None:
    from shared.backends.sqlite.store import SqliteKV

    kv = SqliteKV(tmp_path / "kv.sqlite3")
    hops = 0
    run = kv._run

    async def counting_run(*args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await run(*args, **kwargs)

    kv._run = counting_run  # type: ignore[method-assign]
    try:
        writes = [kv.put(f"k{i}", f"v{i}") for i in range(200)]
        writes += [kv.delete(f"k{i}") for i in range(0, 200, 2)]  # issued after their puts: they win
        bad = kv.write("INSERT INTO no_such_table VALUES (1)", ())
        outcomes = await asyncio.gather(*writes, bad, return_exceptions=True)
        assert outcomes[:-1] == [None] * 300
        assert "no_such_table" in str(outcomes[-1])
        assert hops <= 3  # one transaction for the lot (and a retry one by one after the bad write)
        listed = await kv.list(prefix="k")
        assert sorted(info.name for info in listed.keys) == sorted(f"k{i}" for i in range(1, 200, 2))
        assert await kv.get("k7") == "v7"
    finally:
        await kv.aclose()

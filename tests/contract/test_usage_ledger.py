"""The usage ledger every backend's factory builds (`Backends.usage`: exact in SQLite and memory, write-once-a-second
shards over Workers KV), and the KV ledger itself over every backend's KV, Miniflare's included."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.backends.base import Backends
from shared.backends.factory import open_sqlite_backends
from shared.backends.sqlite.usage_ledger import SqliteUsageLedger
from shared.ports import JsonObject, KeyValueStore, ListResult
from shared.stores.usage import (
    BYTES_FETCHED,
    PAGES_FAILED,
    PAGES_STORED,
    TASKS_SUBMITTED,
    RangeError,
    error_counter,
    report_range,
    usage_report,
)
from shared.stores.usage_shards import MAX_SHARDS, MIN_WRITE_INTERVAL_S, KvUsageLedger, usage_prefix

HOUR = datetime(2026, 12, 7, 10, tzinfo=UTC)
TENANT, OTHER = "tn_usage", "tn_other"


class WriteLog:
    """A KV store that notes when each key was written (monotonic seconds), to check the one-write-a-second rule."""

    def __init__(self, inner: KeyValueStore) -> None:
        self.inner = inner
        self.writes: dict[str, list[float]] = {}

    async def get(self, key: str) -> str | None:
        return await self.inner.get(key)

    async def put(
        self, key: str, value: str, *, ttl_s: float | None = None, metadata: JsonObject | None = None
    ) -> None:
        self.writes.setdefault(key, []).append(time.monotonic())
        await self.inner.put(key, value, ttl_s=ttl_s, metadata=metadata)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def scrub(self) -> None:
        await self.inner.scrub()

    async def list(self, *, prefix: str = "", limit: int = 1000, cursor: str | None = None) -> ListResult:
        return await self.inner.list(prefix=prefix, limit=limit, cursor=cursor)

    def closest_rewrite_s(self) -> float:
        gaps = [b - a for times in self.writes.values() for a, b in itertools.pairwise(times)]
        return min(gaps, default=float("inf"))


async def test_counts_add_up_per_tenant_and_hour(backends: Backends) -> None:
    ledger = backends.usage
    await ledger.add(TENANT, {TASKS_SUBMITTED: 2, PAGES_STORED: 5}, at=HOUR + timedelta(minutes=1))
    await ledger.add(TENANT, {PAGES_STORED: 3, error_counter("timeout"): 1}, at=HOUR + timedelta(minutes=59))
    await ledger.add(TENANT, {PAGES_FAILED: 1}, at=HOUR + timedelta(hours=1))
    await ledger.add(TENANT, {PAGES_STORED: 100}, at=HOUR - timedelta(hours=1))  # before the range
    await ledger.add(OTHER, {PAGES_STORED: 7}, at=HOUR)
    hours = await ledger.hours(TENANT, HOUR, HOUR + timedelta(hours=2))
    assert hours == {
        HOUR: {TASKS_SUBMITTED: 2, PAGES_STORED: 8, error_counter("timeout"): 1},
        HOUR + timedelta(hours=1): {PAGES_FAILED: 1},
    }
    assert await ledger.hours(OTHER, HOUR, HOUR + timedelta(hours=2)) == {HOUR: {PAGES_STORED: 7}}
    assert await ledger.hours(TENANT, HOUR + timedelta(hours=2), HOUR + timedelta(hours=3)) == {}


async def test_concurrent_increments_are_not_lost(backends: Backends) -> None:
    adds = [backends.usage.add(TENANT, {PAGES_STORED: 1, BYTES_FETCHED: n}, at=HOUR) for n in range(50)]
    await asyncio.gather(*adds)
    hours = await backends.usage.hours(TENANT, HOUR, HOUR + timedelta(hours=1))
    assert hours == {HOUR: {PAGES_STORED: 50, BYTES_FETCHED: sum(range(50))}}


@pytest.mark.timeout(120)
async def test_kv_ledger_writers_racing_lose_nothing_and_rewrite_no_key_within_a_second(backends: Backends) -> None:
    """Two writers (two isolates) over one KV namespace, 40 racing adds each, then a second wave that reuses the
    shards: every increment counts, each writer stays within its shards, no key is written twice in a second."""
    kv = WriteLog(backends.kv)
    writers = [KvUsageLedger(kv, writer=f"w{n}") for n in range(2)]
    for wave in range(2):
        adds = [writers[n % 2].add(TENANT, {PAGES_STORED: 1, error_counter("http_status"): wave}, at=HOUR)
                for n in range(80)]  # fmt: skip
        await asyncio.gather(*adds)
    reader = KvUsageLedger(backends.kv)
    assert await reader.hours(TENANT, HOUR, HOUR + timedelta(hours=1)) == {
        HOUR: {PAGES_STORED: 160, error_counter("http_status"): 80}
    }
    assert kv.closest_rewrite_s() >= MIN_WRITE_INTERVAL_S * 0.99
    assert all(key.startswith(usage_prefix(TENANT)) for key in kv.writes)
    for writer in ("w0", "w1"):
        shards = {key for key in kv.writes if f":{writer}:" in key}
        assert 1 <= len(shards) <= MAX_SHARDS
    assert sum(len(times) for times in kv.writes.values()) < 160  # racing adds share writes


async def test_kv_ledger_reads_counts_too_large_for_metadata_from_the_value(backends: Backends) -> None:
    ledger = KvUsageLedger(backends.kv, writer="big")
    many = {error_counter(f"code_{n:03d}_{'x' * 20}"): n + 1 for n in range(60)}  # ~2 KB of JSON
    await ledger.add(TENANT, many, at=HOUR)
    listed = await backends.kv.list(prefix=usage_prefix(TENANT))
    assert [info.metadata for info in listed.keys] == [None]
    assert await KvUsageLedger(backends.kv).hours(TENANT, HOUR, HOUR + timedelta(hours=1)) == {HOUR: many}


async def test_kv_ledger_lists_a_long_range_by_month(backends: Backends) -> None:
    ledger = KvUsageLedger(backends.kv, writer="long")
    days = [HOUR - timedelta(days=d) for d in (0, 40, 200)]
    for at in days:
        await ledger.add(TENANT, {TASKS_SUBMITTED: 1}, at=at)
    found = await KvUsageLedger(backends.kv).hours(TENANT, HOUR - timedelta(days=300), HOUR + timedelta(hours=1))
    assert found == {at: {TASKS_SUBMITTED: 1} for at in days}


async def test_report_has_contiguous_buckets_and_days_summed_from_hours(backends: Backends) -> None:
    ledger = backends.usage
    day = HOUR.replace(hour=0)
    await ledger.add(TENANT, {PAGES_STORED: 2, error_counter("timeout"): 1}, at=day + timedelta(hours=1))
    await ledger.add(TENANT, {PAGES_STORED: 3}, at=day + timedelta(hours=23, minutes=59))
    await ledger.add(TENANT, {PAGES_STORED: 50}, at=day + timedelta(days=2))  # at `to`: outside
    start, end = report_range(day - timedelta(days=1, hours=-5), day + timedelta(days=2), "day", now=HOUR)
    report = await usage_report(ledger, TENANT, start=start, end=end, granularity="day")
    assert report["from"] == "2026-12-06T00:00:00Z" and report["to"] == "2026-12-09T00:00:00Z"
    assert [b["start"] for b in report["buckets"]] == ["2026-12-06T00:00:00Z", "2026-12-07T00:00:00Z",
                                                       "2026-12-08T00:00:00Z"]  # fmt: skip
    assert [b["pages_stored"] for b in report["buckets"]] == [0, 5, 0]
    assert report["buckets"][1]["errors"] == {"timeout": 1} and report["buckets"][0]["errors"] == {}
    assert report["totals"]["pages_stored"] == 5 and report["totals"]["tasks_submitted"] == 0
    hourly = await usage_report(ledger, TENANT, start=day, end=day + timedelta(hours=3), granularity="hour")
    assert [b["pages_stored"] for b in hourly["buckets"]] == [0, 2, 0]


def test_report_ranges_have_defaults_and_bounds() -> None:
    now = datetime(2026, 12, 8, 12, 34, 56, 789, tzinfo=UTC)
    assert report_range(None, None, "day", now=now) == (datetime(2026, 12, 1, tzinfo=UTC), now.replace(microsecond=0))
    assert report_range(None, None, "hour", now=now)[0] == datetime(2026, 12, 7, 12, tzinfo=UTC)
    assert report_range(datetime(2026, 1, 1), None, "hour", now=datetime(2026, 2, 11, 16, tzinfo=UTC))[0].tzinfo
    with pytest.raises(RangeError, match="more than 1000"):
        report_range(datetime(2026, 1, 1, tzinfo=UTC), None, "hour", now=now)
    with pytest.raises(RangeError, match="before"):
        report_range(now, now - timedelta(hours=1), "hour", now=now)
    with pytest.raises(RangeError) as refused:
        report_range(datetime(1, 1, 1, tzinfo=UTC), None, "day", now=now)
    assert refused.value.field == "from"


async def test_sqlite_ledger_is_exact_under_two_concurrent_writers(tmp_path: Path) -> None:
    """Two clients of one database file (two writer connections, as two processes have)."""
    path = tmp_path / "usage.sqlite3"
    clients = [open_sqlite_backends(path, visibility_timeout_s=30, max_retries=1) for _ in range(2)]
    try:
        assert all(isinstance(client.usage, SqliteUsageLedger) for client in clients)
        adds = [clients[n % 2].usage.add(TENANT, {PAGES_STORED: 1, BYTES_FETCHED: 10}, at=HOUR) for n in range(200)]
        await asyncio.gather(*adds)
        for client in clients:
            assert await client.usage.hours(TENANT, HOUR, HOUR + timedelta(hours=1)) == {
                HOUR: {PAGES_STORED: 200, BYTES_FETCHED: 2000}
            }
    finally:
        for client in clients:
            await client.aclose()


async def test_the_workers_ledger_counts_racing_adds_inside_pyodide(request: pytest.FixtureRequest) -> None:
    """The ledger the producer and consumer Workers build, run in Pyodide itself over Miniflare's KV."""
    from tests.cloudflare.client import Harness

    harness: Harness = request.getfixturevalue("cloudflare_harness")
    await harness.call("reset")
    outcome = await harness.call("run", {"scenario": "usage", "args": {"hour": "2026-12-07T10:00:00", "adds": 30}})
    assert outcome["hours"] == {"2026-12-07T10:00:00+00:00": {"pages_stored": 60, "error:timeout": 60}}
    assert 2 <= outcome["keys"] <= 2 * MAX_SHARDS

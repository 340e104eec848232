"""Backups of one tenant (shared/backups.py) over the memory and SQLite backends: a restore into an empty namespace
equals the original, another tenant is neither exported nor touched, corrupt or truncated input writes nothing,
retention deletes only older days, and the daily run backs up every tenant."""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scrapeq.transfer import import_lines
from shared import backups, keys
from shared.backends.memory import MemoryKV
from shared.backends.objects import DirectoryObjects, MemoryObjects
from shared.backends.sqlite.store import SqliteKV
from shared.errors import BackupError
from shared.ports import KeyValueStore, scan
from shared.stores.accounts import Accounts

KEY = "backups/2026-12-01/t.jsonl.gz"


@pytest.fixture(params=["memory", "sqlite"])
async def make_kv(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[SqliteKV] = []

    async def make() -> KeyValueStore:
        if request.param == "memory":
            return MemoryKV()
        store = SqliteKV(tmp_path / f"kv{len(opened)}.sqlite3")
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


async def dump(kv: KeyValueStore) -> dict[str, tuple[str, Any, float | None]]:
    found = {}
    async for info in scan(kv, ""):
        value = await kv.get(info.name)
        assert value is not None
        found[info.name] = (value, info.metadata, info.expiration)
    return found


def same(restored: dict[str, Any], original: dict[str, Any]) -> None:
    """Every key, value and metadata equal; expirations within a second (a TTL is whole seconds)."""
    assert sorted(restored) == sorted(original)
    for name, (value, metadata, expiration) in original.items():
        got = restored[name]
        assert (got[0], got[1]) == (value, metadata), name
        assert (got[2] is None) == (expiration is None), name
        if expiration is not None:
            assert abs(got[2] - expiration) <= 1, name


async def seed(kv: KeyValueStore) -> tuple[str, str, str]:
    """Two tenants with keys, audit entries, a task, pages with TTL and metadata; (tenant a, its API key, b)."""
    accounts = Accounts(kv)
    a = await accounts.create_tenant("acme", ["kb_a"])
    _, api_key = await accounts.create_key(a.tenant_id)
    b = await accounts.create_tenant("bolt", ["kb_b"])
    await accounts.create_key(b.tenant_id)
    for tenant in (a.tenant_id, b.tenant_id):
        await kv.put(keys.task(tenant, "t1"), '{"status":"completed","naïve":"✓"}', metadata={"status": "completed"})
        for seq in range(3):
            await kv.put(keys.page(tenant, "t1", seq), f"page {seq} of {tenant}\n" * 50, ttl_s=3600)
        await kv.put(keys.idempotency(tenant, "x"), "t1", ttl_s=120, metadata={"n": 1})
    return a.tenant_id, api_key, b.tenant_id


def of_tenant(data: dict[str, Any], tenant: str) -> dict[str, Any]:
    owned = {name: entry for name, entry in data.items() if name.startswith(keys.tenant_prefix(tenant))}
    owned[keys.tenant_index(tenant)] = data[keys.tenant_index(tenant)]
    owned |= {name: entry for name, entry in data.items() if name.startswith("apikey:") and entry[0].startswith(tenant)}
    return owned


async def test_a_restore_into_an_empty_namespace_equals_the_original_and_signs_in(make_kv: Any) -> None:
    kv = await make_kv()
    tenant, api_key, other = await seed(kv)
    objects = MemoryObjects()
    exported = await backups.export_tenant(kv, objects, KEY, tenant)
    original = await dump(kv)
    mine = of_tenant(original, tenant)
    assert exported.records == len(mine) and exported.bytes == len(objects.objects[KEY])
    lines = gzip.decompress(objects.objects[KEY]).decode().splitlines()
    assert not [line for line in lines if other in line]  # the other tenant is not in it

    empty = await make_kv()
    restored = await backups.restore_tenant(empty, objects, KEY, clock=time.time)
    assert (restored.tenant_id, restored.imported, restored.skipped) == (tenant, len(mine), 0)
    same(await dump(empty), mine)
    signed_in, _ = await Accounts(empty).authenticate(api_key)
    assert signed_in.tenant_id == tenant
    assert [t.tenant_id for t in await Accounts(empty).list_tenants()] == [tenant]
    assert await dump(kv) == original  # exporting changed nothing


async def test_restoring_next_to_another_tenant_leaves_it_untouched(make_kv: Any) -> None:
    kv = await make_kv()
    tenant, _, other = await seed(kv)
    objects = MemoryObjects()
    await backups.export_tenant(kv, objects, KEY, tenant)
    target = await make_kv()
    await backups.export_tenant(kv, objects, "b.jsonl.gz", other)
    await backups.restore_tenant(target, objects, "b.jsonl.gz", clock=time.time)
    before = await dump(target)
    await backups.restore_tenant(target, objects, KEY, clock=time.time)
    after = await dump(target)
    assert of_tenant(after, other) == before
    same(of_tenant(after, tenant), of_tenant(await dump(kv), tenant))


async def test_a_tenant_with_data_is_refused_unless_replace(make_kv: Any) -> None:
    kv = await make_kv()
    tenant, _, _ = await seed(kv)
    objects = MemoryObjects()
    await backups.export_tenant(kv, objects, KEY, tenant)
    with pytest.raises(BackupError, match="already has data"):
        await backups.restore_tenant(kv, objects, KEY, clock=time.time)
    await kv.put(keys.task(tenant, "t1"), "changed since")
    await backups.restore_tenant(kv, objects, KEY, clock=time.time, replace=True)
    assert await kv.get(keys.task(tenant, "t1")) == '{"status":"completed","naïve":"✓"}'
    with pytest.raises(BackupError, match="not tn_other"):
        await backups.restore_tenant(kv, objects, KEY, clock=time.time, tenant_id="tn_other", replace=True)


def corruptions(good: bytes, tenant: str) -> dict[str, tuple[bytes, str]]:
    bad_line = gzip.compress(gzip.decompress(good) + b"{not json\n")
    foreign = gzip.compress(gzip.decompress(good) + b'{"key":"tenant:tn_x:profile","value":"{}"}\n')
    return {
        "garbage": (b"this is not a backup at all", "not a readable gzip"),
        "truncated_tail": (good[:-6], "truncated"),
        "truncated_half": (good[: len(good) // 2], "truncated"),
        "flipped_byte": (good[:40] + bytes([good[40] ^ 0xFF]) + good[41:], "gzip"),
        "trailing_data": (good + b"junk", "after the end"),
        "bad_line": (bad_line, "not an export record"),
        "foreign_key": (foreign, f"not a key of tenant {tenant}"),
        "empty": (gzip.compress(b""), "no records"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "truncated_tail",
        "truncated_half",
        "flipped_byte",
        "trailing_data",
        "bad_line",
        "foreign_key",
        "empty",
    ],
)
async def test_corrupt_or_truncated_input_is_refused_and_writes_nothing(make_kv: Any, case: str) -> None:
    kv = await make_kv()
    tenant, _, _ = await seed(kv)
    objects = MemoryObjects()
    await backups.export_tenant(kv, objects, KEY, tenant)
    data, message = corruptions(objects.objects[KEY], tenant)[case]
    objects.objects[KEY] = data
    empty = await make_kv()
    with pytest.raises(BackupError, match=message):
        await backups.restore_tenant(empty, objects, KEY, clock=time.time)
    assert await dump(empty) == {}


async def test_a_missing_backup_is_a_clear_error() -> None:
    with pytest.raises(BackupError, match="no backup"):
        await backups.restore_tenant(MemoryKV(), MemoryObjects(), KEY, clock=time.time)


async def test_expired_records_are_skipped_and_large_values_cross_read_chunks(
    make_kv: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv = await make_kv()
    tenant, _, _ = await seed(kv)
    await kv.put(keys.page(tenant, "t2", 0), "x" * 300_000)
    monkeypatch.setattr(backups, "READ_CHUNK_BYTES", 1000)  # many reads and inflation steps per line
    objects = MemoryObjects()
    await backups.export_tenant(kv, objects, KEY, tenant)
    later = time.time() + 7200  # the pages (1 h) and the idempotency key (2 min) have expired by then
    restored = await backups.restore_tenant(await make_kv(), objects, KEY, clock=lambda: later)
    assert restored.skipped == 4
    assert await backups.check_backup(objects, KEY) == (tenant, restored.imported + restored.skipped)


async def test_retention_deletes_only_days_older_than_the_setting() -> None:
    objects = MemoryObjects()
    today = date(2026, 12, 31)
    for age in (0, 1, 29, 30, 31, 45):
        objects.objects[backups.backup_key(today - timedelta(days=age), "tn_a")] = b"x"
    objects.objects["backups/notes.txt"] = b"kept"
    objects.objects["backups/not-a-day/tn_a.jsonl.gz"] = b"kept"
    objects.objects["elsewhere/2020-01-01/tn_a.jsonl.gz"] = b"kept"
    deleted = await backups.sweep(objects, today=today, retention_days=30)
    assert deleted == [
        backups.backup_key(today - timedelta(days=45), "tn_a"),
        backups.backup_key(date(2026, 11, 30), "tn_a"),
    ]
    left = sorted(objects.objects)
    assert [backups.backup_day(k) for k in left if backups.backup_day(k)] == [
        today - timedelta(days=age) for age in (30, 29, 1, 0)
    ]
    assert {"backups/notes.txt", "backups/not-a-day/tn_a.jsonl.gz", "elsewhere/2020-01-01/tn_a.jsonl.gz"} <= set(left)


class FailingFor(MemoryObjects):
    """Objects whose writes to one tenant's backup fail."""

    def __init__(self, tenant: str) -> None:
        super().__init__()
        self.tenant = tenant

    def writer(self, key: str) -> Any:
        writer = super().writer(key)
        if self.tenant in key:

            async def fail(data: bytes) -> None:
                raise OSError("bucket unavailable")

            writer.write = fail  # type: ignore[method-assign]
        return writer


async def test_the_daily_run_backs_up_every_tenant_writes_a_manifest_and_sweeps() -> None:
    kv = MemoryKV()
    tenant, _, other = await seed(kv)
    objects = MemoryObjects()
    objects.objects[backups.backup_key(date(2026, 10, 1), tenant)] = b"old"
    now = datetime(2026, 12, 1, 3, 17, tzinfo=UTC)
    report = await backups.run_daily(kv, objects, now=now, retention_days=30)
    assert sorted(e.tenant_id for e in report.backed_up) == sorted([tenant, other]) and report.failed == []
    assert report.deleted == [backups.backup_key(date(2026, 10, 1), tenant)]
    manifest = objects.objects["backups/2026-12-01/manifest.json"]
    assert tenant in manifest.decode() and other in manifest.decode()
    for name in (tenant, other):
        assert (await backups.check_backup(objects, backups.backup_key(now.date(), name)))[0] == name


async def test_a_failing_tenant_is_logged_the_others_backed_up_and_nothing_swept() -> None:
    kv = MemoryKV()
    tenant, _, other = await seed(kv)
    objects = FailingFor(other)
    objects.objects[backups.backup_key(date(2026, 10, 1), tenant)] = b"old"
    report = await backups.run_daily(kv, objects, now=datetime(2026, 12, 1, tzinfo=UTC), retention_days=30)
    assert [e.tenant_id for e in report.backed_up] == [tenant] and report.failed == [other]
    assert report.deleted == [] and backups.backup_key(date(2026, 10, 1), tenant) in objects.objects
    assert backups.backup_key(date(2026, 12, 1), other) not in objects.objects  # never a partial object


async def test_a_directory_backup_is_plain_gzip_that_scrapeq_import_reads(tmp_path: Path) -> None:
    kv = MemoryKV()
    tenant, _, _ = await seed(kv)
    objects = DirectoryObjects(tmp_path)
    await backups.export_tenant(kv, objects, KEY, tenant)
    assert not list(tmp_path.rglob("*.partial"))
    lines = gzip.decompress((tmp_path / KEY).read_bytes()).decode().splitlines()
    copy = MemoryKV()
    imported, _ = await import_lines(copy, lines, clock=time.time)
    assert imported == len(lines)
    same(await dump(copy), of_tenant(await dump(kv), tenant))
    assert [info.key async for info in objects.list("backups/")] == [KEY]

"""Backups of one tenant's KV data as gzip-compressed JSON lines in an object store (R2), their restore into a KV
namespace, the daily run over every tenant and the retention sweep; standard library only (Workers run it).
"""

# A backup object is a plain gzip stream of the export format of `scrapeq export` (one
# `{"key", "value", "expiration", "metadata"}` object per line), so `gunzip | scrapeq import` reads it too. It is
# written and read in bounded pieces: a line at a time into the compressor, the compressed bytes in parts
# (`ObjectWriter`), read back `READ_CHUNK_BYTES` at a time. It is not a point-in-time snapshot: KV has none, so a
# key written while the export runs may or may not be in it.

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared import keys
from shared.errors import BackupError
from shared.ports import MIN_TTL_S, Clock, JsonObject, KeyInfo, KeyValueStore, ObjectStore, scan

log = logging.getLogger(__name__)

ROOT = "backups/"
MANIFEST = "manifest.json"
#: Compressed bytes read at a time, and the most one decompression step may produce.
READ_CHUNK_BYTES = 4 * 1024 * 1024
#: The longest line a restore takes: a KV value is at most 25 MiB, which JSON escaping can grow.
MAX_LINE_BYTES = 64 * 1024 * 1024
_GZIP = 31  # zlib's `wbits` for the gzip container


def backup_key(day: date, tenant_id: str) -> str:
    return f"{ROOT}{day.isoformat()}/{tenant_id}.jsonl.gz"


def backup_day(key: str) -> date | None:
    """The day of a key laid out as `backups/{YYYY-MM-DD}/{name}`, else None (never swept)."""
    parts = key.removeprefix(ROOT).split("/") if key.startswith(ROOT) else []
    if len(parts) != 2 or not parts[1]:
        return None
    try:
        return date.fromisoformat(parts[0])
    except ValueError:
        return None


# --- the record format (shared with `scrapeq export` / `import`)


@dataclass(frozen=True)
class Record:
    key: str
    value: str
    #: Absolute expiry (epoch seconds), as KV lists it.
    expiration: float | None = None
    metadata: JsonObject | None = None


def encode_record(info: KeyInfo, value: str) -> str:
    record = {"key": info.name, "value": value, "expiration": info.expiration, "metadata": info.metadata}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def decode_record(line: str, number: int) -> Record:
    """One export line; ValueError (naming the line) if it is not a record."""
    try:
        record = json.loads(line)
        key, value = record["key"], record["value"]
        expiration = record.get("expiration")
        metadata = record.get("metadata")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"line {number}: not an export record ({exc})") from None
    if not isinstance(key, str) or not isinstance(value, str):
        raise ValueError(f"line {number}: key and value must be strings")
    if isinstance(expiration, bool) or not isinstance(expiration, int | float | None):
        raise ValueError(f"line {number}: expiration must be a number of seconds")
    if not isinstance(metadata, dict | None):
        raise ValueError(f"line {number}: metadata must be an object")
    return Record(key, value, None if expiration is None else float(expiration), metadata)


async def write_record(kv: KeyValueStore, record: Record, *, clock: Clock) -> bool:
    """Put a record back with the rest of its lifetime; False (nothing written) if it has expired already."""
    ttl_s = None
    if record.expiration is not None:
        remaining = record.expiration - clock()
        if remaining <= 0:
            return False
        ttl_s = max(MIN_TTL_S, math.ceil(remaining))
    await kv.put(record.key, record.value, ttl_s=ttl_s, metadata=record.metadata)
    return True


async def export_record(kv: KeyValueStore, info: KeyInfo) -> str | None:
    """The line of one listed key, or None if it expired or was deleted since the listing."""
    value = await kv.get(info.name)
    return None if value is None else encode_record(info, value)


# --- one tenant


async def tenant_lines(kv: KeyValueStore, tenant_id: str) -> AsyncIterator[str]:
    """Every live key of a tenant as a line: its prefix in key order, then the two global keys that point at it,
    its entry in the tenant index and its API keys' lookups (without them it could not be listed or sign in)."""
    hashes: list[str] = []
    key_records = keys.api_keys_prefix(tenant_id)
    async for info in scan(kv, keys.tenant_prefix(tenant_id)):
        if (line := await export_record(kv, info)) is None:
            continue
        if info.name.startswith(key_records) and (key_hash := _key_hash(line)):
            hashes.append(key_hash)
        yield line
    owner = f"{tenant_id}:"
    for name in (keys.tenant_index(tenant_id), *(keys.api_key_lookup(h) for h in hashes)):
        async for info in scan(kv, name):
            line = await export_record(kv, info) if info.name == name else None
            if line is not None and (name.startswith(keys.TENANT_INDEX_PREFIX) or _value(line).startswith(owner)):
                yield line


def _key_hash(line: str) -> str | None:
    try:
        found = json.loads(_value(line)).get("key_hash")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def _value(line: str) -> str:
    return str(json.loads(line)["value"])


@dataclass(frozen=True)
class Exported:
    tenant_id: str
    key: str
    records: int
    #: Compressed size of the object.
    bytes: int


async def export_tenant(kv: KeyValueStore, objects: ObjectStore, key: str, tenant_id: str) -> Exported:
    """Write the tenant's backup to `key`: whole, or (on any failure) not at all."""
    writer = objects.writer(key)
    compressor = zlib.compressobj(6, zlib.DEFLATED, _GZIP)
    records = size = 0
    try:
        async for line in tenant_lines(kv, tenant_id):
            records += 1
            if data := compressor.compress(line.encode("utf-8") + b"\n"):
                await writer.write(data)
                size += len(data)
        data = compressor.flush()
        await writer.write(data)
        await writer.close()
    except Exception:
        await writer.abort()
        raise
    return Exported(tenant_id, key, records, size + len(data))


async def backup_lines(objects: ObjectStore, key: str) -> AsyncIterator[tuple[int, str]]:
    """(line number, line) of a backup, read and inflated in bounded steps; `BackupError` on a corrupt,
    truncated or missing object."""
    lines = _LineInflater(key)
    async for data in _chunks(objects, key):
        for item in lines.feed(data):
            yield item
    lines.finish()


async def _chunks(objects: ObjectStore, key: str) -> AsyncIterator[bytes]:
    total = await objects.size(key)
    if total is None:
        raise BackupError(f"no backup {key!r}")
    offset = 0
    while offset < total:
        data = await objects.read(key, offset, min(READ_CHUNK_BYTES, total - offset))
        if not data:
            raise BackupError(f"{key}: the object ended at byte {offset} of {total}")
        offset += len(data)
        yield data


class _LineInflater:
    """A gzip stream, fed piece by piece, as complete lines; at most `READ_CHUNK_BYTES` inflated per step."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.inflater = zlib.decompressobj(_GZIP)
        self.pending = bytearray()
        self.number = 0

    def feed(self, data: bytes) -> Iterator[tuple[int, str]]:
        while True:  # until the piece is consumed and nothing more comes out
            if self.inflater.eof and data:
                raise BackupError(f"{self.key}: data after the end of the gzip stream")
            try:
                out = self.inflater.decompress(data, READ_CHUNK_BYTES)
            except zlib.error as exc:
                raise BackupError(f"{self.key}: not a readable gzip backup ({exc})") from None
            data = self.inflater.unconsumed_tail or self.inflater.unused_data
            if not out and not data:
                return
            self.pending += out
            start = 0
            while (end := self.pending.find(b"\n", start)) >= 0:
                self.number += 1
                yield self.number, _text(self.pending[start:end], self.key, self.number)
                start = end + 1
            del self.pending[:start]
            if len(self.pending) > MAX_LINE_BYTES:
                raise BackupError(f"{self.key}: line {self.number + 1} is longer than {MAX_LINE_BYTES} bytes")

    def finish(self) -> None:
        if not self.inflater.eof:
            raise BackupError(f"{self.key}: truncated (the gzip stream does not end)")
        if self.pending:
            raise BackupError(f"{self.key}: truncated (its last line does not end)")


def _text(line: bytearray, key: str, number: int) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise BackupError(f"{key}: line {number} is not UTF-8") from None


def owner_of(record: Record) -> str | None:
    """The tenant a backed-up key belongs to: its prefix, its index entry, or (an API key lookup) its value."""
    if record.key.startswith("tenant:"):
        return record.key.split(":", 2)[1]
    if record.key.startswith(keys.TENANT_INDEX_PREFIX):
        return record.key.removeprefix(keys.TENANT_INDEX_PREFIX)
    if record.key.startswith(keys.api_key_lookup("")):
        return record.value.split(":", 1)[0]
    return None


async def check_backup(objects: ObjectStore, key: str, tenant_id: str | None = None) -> tuple[str, int]:
    """Read a whole backup without writing anything: (its tenant, its records). `BackupError` if it is unreadable,
    mixes tenants, is not `tenant_id`'s, or lacks the tenant's profile."""
    found: str | None = None
    records = 0
    profile = False
    async for number, line in backup_lines(objects, key):
        try:
            record = decode_record(line, number)
        except ValueError as exc:
            raise BackupError(f"{key}: {exc}") from None
        owner = owner_of(record)
        if owner is None or (found is not None and owner != found):
            raise BackupError(f"{key}: line {number}: {record.key!r} is not a key of tenant {found or '?'}")
        found = owner
        records += 1
        profile = profile or record.key == keys.tenant(owner)
    if found is None:
        raise BackupError(f"{key}: the backup holds no records")
    if tenant_id is not None and found != tenant_id:
        raise BackupError(f"{key} is a backup of tenant {found}, not {tenant_id}")
    if not profile:
        raise BackupError(f"{key}: no {keys.tenant(found)} record: not a whole tenant's backup")
    return found, records


@dataclass(frozen=True)
class Restored:
    tenant_id: str
    imported: int
    #: Records whose expiration had passed: not written.
    skipped: int


async def restore_tenant(
    kv: KeyValueStore,
    objects: ObjectStore,
    key: str,
    *,
    clock: Clock,
    tenant_id: str | None = None,
    replace: bool = False,
) -> Restored:
    """Restore a backup into `kv`. The whole object is checked first (nothing is written from a corrupt or
    truncated one); a tenant with data in `kv` is refused unless `replace` (its keys are then written over, keys
    not in the backup stay). The global keys go last, so the tenant is listed and can sign in only once restored."""
    tenant, _ = await check_backup(objects, key, tenant_id)
    if not replace and await has_data(kv, tenant):
        raise BackupError(f"tenant {tenant} already has data in the target namespace (restore with replace)")
    prefix = keys.tenant_prefix(tenant)
    imported = skipped = 0
    later: list[Record] = []
    async for number, line in backup_lines(objects, key):
        record = decode_record(line, number)
        if owner_of(record) != tenant:  # the object changed since it was checked
            raise BackupError(f"{key}: changed while being restored (line {number})")
        if not record.key.startswith(prefix):
            later.append(record)
        elif await write_record(kv, record, clock=clock):
            imported += 1
        else:
            skipped += 1
    for record in later:
        written = await write_record(kv, record, clock=clock)
        imported, skipped = imported + written, skipped + (not written)
    return Restored(tenant, imported, skipped)


async def has_data(kv: KeyValueStore, tenant_id: str) -> bool:
    listed = await kv.list(prefix=keys.tenant_prefix(tenant_id), limit=1)
    return bool(listed.keys) or await kv.get(keys.tenant_index(tenant_id)) is not None


# --- every tenant, every day


async def tenant_ids(kv: KeyValueStore) -> AsyncIterator[str]:
    """Every tenant of the index (`Accounts.list_tenants` without parsing the records)."""
    async for info in scan(kv, keys.TENANT_INDEX_PREFIX):
        yield info.name.removeprefix(keys.TENANT_INDEX_PREFIX)


@dataclass
class DailyReport:
    day: date
    backed_up: list[Exported] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: Objects the retention sweep deleted (none when a tenant failed: the sweep is then skipped).
    deleted: list[str] = field(default_factory=list)


async def run_daily(kv: KeyValueStore, objects: ObjectStore, *, now: datetime, retention_days: int) -> DailyReport:
    """Back up every tenant under today's prefix, write the day's manifest, then delete the days older than
    `retention_days`; a tenant that fails is logged and skipped, and then nothing is deleted."""
    report = DailyReport(now.astimezone(UTC).date())
    async for tenant in tenant_ids(kv):
        extra: dict[str, Any] = {"tenant_id": tenant}
        try:
            done = await export_tenant(kv, objects, backup_key(report.day, tenant), tenant)
        except Exception:
            log.exception("backup of a tenant failed", extra=extra)
            report.failed.append(tenant)
            continue
        report.backed_up.append(done)
        log.info("backed up %d records, %d bytes to %s", done.records, done.bytes, done.key, extra=extra)
    await write_manifest(objects, report, now)
    if report.failed:
        log.warning("retention sweep skipped: %d tenant(s) failed to back up", len(report.failed))
    else:
        report.deleted = await sweep(objects, today=report.day, retention_days=retention_days)
    log.info(
        "daily backup of %s: %d tenants, %d failed, %d old objects deleted",
        report.day,
        len(report.backed_up),
        len(report.failed),
        len(report.deleted),
    )
    return report


async def write_manifest(objects: ObjectStore, report: DailyReport, now: datetime) -> None:
    """`backups/{day}/manifest.json`: what the day's run wrote (tenant, object, records, bytes) and what failed."""
    manifest = {
        "day": report.day.isoformat(),
        "finished_at": now.astimezone(UTC).isoformat(),
        "tenants": [
            {"tenant_id": e.tenant_id, "key": e.key, "records": e.records, "bytes": e.bytes} for e in report.backed_up
        ],
        "failed": report.failed,
    }
    writer = objects.writer(f"{ROOT}{report.day.isoformat()}/{MANIFEST}")
    await writer.write(json.dumps(manifest, indent=1).encode("utf-8"))
    await writer.close()


async def sweep(objects: ObjectStore, *, today: date, retention_days: int) -> list[str]:
    """Delete every object of a day more than `retention_days` before `today`; what it deleted."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    cutoff = today - timedelta(days=retention_days)
    doomed = [info.key async for info in objects.list(ROOT) if (day := backup_day(info.key)) and day < cutoff]
    for key in doomed:  # listed first: deleting while listing could skip keys
        await objects.delete(key)
    return doomed

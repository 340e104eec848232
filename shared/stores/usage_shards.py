"""`KvUsageLedger`: usage counters over Workers KV, each key written by one writer at most once a second and
summed on read; standard library only (the Cloudflare adapters build it in Pyodide)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared import keys
from shared.backends.kvlimits import MAX_METADATA_BYTES
from shared.ports import KeyValueStore, scan
from shared.stores.usage import Counts, hour_start

#: Workers KV takes one write per second per key.
MIN_WRITE_INTERVAL_S = 1.0
#: Shard keys one writer keeps per tenant and hour: up to this many writes a second before an add waits.
MAX_SHARDS = 16
#: A range longer than this is listed a month at a time rather than a day at a time.
DAILY_LISTING_MAX_DAYS = 62
#: Shards of hours this old are dropped from the writer's memory once written (nothing adds to them any more).
KEEP_HOURS = 3


def usage_prefix(tenant_id: str) -> str:
    return f"{keys.tenant_prefix(tenant_id)}usage:"


def shard_key(tenant_id: str, hour: datetime, writer: str, shard: int) -> str:
    """`tenant:{t}:usage:{YYYYMMDDHH}:{writer}:{shard}`: one writer's share of one hour."""
    return f"{usage_prefix(tenant_id)}{hour:%Y%m%d%H}:{writer}:{shard}"


def hour_of_key(key: str) -> datetime:
    stamp = key.rsplit(":", 3)[-3]
    return datetime.strptime(stamp, "%Y%m%d%H").replace(tzinfo=UTC)


@dataclass
class _Shard:
    key: str
    #: Everything this writer ever added to the key: the value it holds once written (so a rewrite is idempotent).
    totals: Counter[str] = field(default_factory=Counter)
    written_at: float = float("-inf")
    writing: bool = False
    #: `totals` has more than the key holds (an add since the last write, or a write that failed).
    dirty: bool = False


class KvUsageLedger:
    """Usage over KV, which has no atomic increment and takes one write per second per key.

    Nothing is read and written back: each writer (a process or isolate, a random id chosen on its first add)
    owns its keys, `tenant:{t}:usage:{hour}:{writer}:{shard}`, each holding the writer's running totals for that
    shard (also as KV metadata, so a listing reads them without a `get`). An add goes to a shard of the writer
    not written in the last second, opening a new one up to `MAX_SHARDS`, else waits for the first to be free
    (adds that arrive meanwhile go out in the same write). A failed write leaves the shard dirty, rewritten whole
    by the next add. A read lists the hours' keys, a day (or a month) per `list`, and sums them.
    """

    def __init__(self, kv: KeyValueStore, *, writer: str | None = None) -> None:
        self.kv = kv
        self._writer = writer  # chosen on the first add: no entropy at import or build time on Workers
        self._shards: dict[tuple[str, datetime], list[_Shard]] = {}
        self._pending: dict[tuple[str, datetime], Counter[str]] = {}

    @property
    def writer(self) -> str:
        if self._writer is None:
            self._writer = secrets.token_hex(6)
        return self._writer

    async def add(self, tenant_id: str, counts: Mapping[str, int], *, at: datetime) -> None:
        slot = (tenant_id, hour_start(at))
        self._pending.setdefault(slot, Counter()).update(counts)
        await self._flush(slot)
        self._forget_old(slot[1])

    async def _flush(self, slot: tuple[str, datetime]) -> None:
        shards = self._shards.setdefault(slot, [])
        while self._pending.get(slot) or any(s.dirty and not s.writing for s in shards):
            now = time.monotonic()
            free = [s for s in shards if not s.writing and now - s.written_at >= MIN_WRITE_INTERVAL_S]
            shard = next((s for s in free if s.dirty), free[0] if free else None)
            if shard is None and len(shards) < MAX_SHARDS:
                shard = _Shard(shard_key(slot[0], slot[1], self.writer, len(shards)))
                shards.append(shard)
            if shard is None:
                ready_at = min((s.written_at for s in shards if not s.writing), default=now)
                await asyncio.sleep(max(0.01, ready_at + MIN_WRITE_INTERVAL_S - now))
                continue
            shard.totals.update(self._pending.pop(slot, Counter()))
            await self._write(shard)

    async def _write(self, shard: _Shard) -> None:
        shard.writing, shard.dirty = True, True
        shard.written_at = time.monotonic()
        value = json.dumps(dict(shard.totals), separators=(",", ":"), sort_keys=True)
        metadata = {"c": dict(shard.totals)} if len(value) + 8 <= MAX_METADATA_BYTES else None
        try:
            await self.kv.put(shard.key, value, metadata=metadata)
            shard.dirty = False
        finally:
            shard.writing = False

    def _forget_old(self, hour: datetime) -> None:
        horizon = hour - timedelta(hours=KEEP_HOURS)
        for slot in [s for s in self._shards if s[1] < horizon]:
            if not self._pending.get(slot) and not any(s.dirty or s.writing for s in self._shards[slot]):
                del self._shards[slot]

    async def hours(self, tenant_id: str, start: datetime, end: datetime) -> dict[datetime, Counts]:
        first = hour_start(start)
        found: dict[datetime, Counter[str]] = {}
        for prefix in _listing_prefixes(usage_prefix(tenant_id), first, end):
            async for info in scan(self.kv, prefix):
                hour = hour_of_key(info.name)
                if not first <= hour < end:
                    continue
                meta = info.metadata or {}
                counts = meta.get("c") if isinstance(meta.get("c"), dict) else None
                if counts is None:
                    raw = await self.kv.get(info.name)  # too large for metadata: the value has it
                    counts = json.loads(raw) if raw else {}
                found.setdefault(hour, Counter()).update({str(k): int(v) for k, v in counts.items()})
        return {hour: dict(counts) for hour, counts in found.items()}


def _listing_prefixes(base: str, first: datetime, end: datetime) -> list[str]:
    """One key prefix per UTC day of the range, or per month for a long one (fewer `list` calls)."""
    monthly = end - first > timedelta(days=DAILY_LISTING_MAX_DAYS)
    prefixes: list[str] = []
    at = first.replace(hour=0)
    while at < end:
        prefix = f"{base}{at:%Y%m}" if monthly else f"{base}{at:%Y%m%d}"
        if not prefixes or prefixes[-1] != prefix:
            prefixes.append(prefix)
        at += timedelta(days=1)
    return prefixes

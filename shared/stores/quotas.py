"""Tenant quotas (tasks at once, pages per UTC day) and `KvQuotaLedger`, which counts them over KV keys alone;
standard library only (the Cloudflare adapters build the ledger in Pyodide).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from shared import keys
from shared.ports import MAX_LIST_LIMIT, KeyInfo

if TYPE_CHECKING:
    from shared.models import Task
    from shared.ports import KeyValueStore
    from shared.settings import Settings
    from shared.stores.accounts import Tenant

CONCURRENT_TASKS = "concurrent_tasks"
PAGES_PER_DAY = "pages_per_day"
#: At the concurrency limit, at most this many places are checked against their task's status per submit.
MAX_MARKER_CHECKS = 100
#: A place outlives any real crawl; past this age it only means the task's end never released it.
ACTIVE_MARKER_TTL_S = 7 * 24 * 3600
#: A pages-per-day checkpoint is written once this many settled index keys are past the latest one, so a
#: submit lists at most about this many plus the keys of the last `quota_settle_s`.
PAGES_CHECKPOINT_EVERY = 50
PAGES_CHECKPOINT_TTL_S = 2 * 24 * 3600


@dataclass(frozen=True)
class Quotas:
    """A tenant's quotas (0: none) and how long a new task index key may take to be listed everywhere."""

    max_concurrent_tasks: int
    max_pages_per_day: int
    settle_s: float = 0.0

    @classmethod
    def of(cls, tenant: Tenant, settings: Settings) -> Quotas:
        """The tenant's own quotas where set, else the service's defaults."""
        own = tenant.limits
        concurrent, pages = own.max_concurrent_tasks, own.max_pages_per_day
        return cls(
            max_concurrent_tasks=settings.max_concurrent_tasks if concurrent is None else concurrent,
            max_pages_per_day=settings.max_pages_per_day if pages is None else pages,
            settle_s=settings.quota_settle_s,
        )


@dataclass(frozen=True)
class Refusal:
    """Which quota a reservation would exceed, and how much of it is used (for concurrency, maybe the oldest
    holders, whose tasks the caller may find ended)."""

    quota: str
    used: int
    holders: tuple[str, ...] = field(default=(), compare=False)


class TaskLookup(Protocol):
    """Reads task records (a `TaskStore`): whether a task holding a place has ended, and what it reserved."""

    async def get(self, tenant_id: str, task_id: str) -> Task | None: ...

    async def has_ended(self, tenant_id: str, task_id: str) -> bool:
        """Whether the task's record says it ended; a record not visible (yet) has not."""
        ...


class QuotaLedger(Protocol):
    """Where a backend counts quotas: built by the backend factory (`Backends.quotas`)."""

    async def reserve(
        self, tenant_id: str, task_id: str, *, pages: int, quotas: Quotas, now: datetime, tasks: TaskLookup
    ) -> Refusal | None:
        """Count the task against its tenant's quotas, or say which one it would exceed (counting nothing).
        `tasks` tells which places are held by tasks that ended without releasing them."""
        ...

    async def release(self, tenant_id: str, task_id: str, *, used_pages: int | None = None) -> None:
        """The task no longer counts against its tenant's concurrent tasks (idempotent). With `used_pages` (the
        pages it stored), the rest of the pages it reserved are given back to the day it reserved them on, if
        that day is still today: failed, skipped and never-crawled pages use no quota (README "Limits and
        quotas"). Without, its reservation stands whole (an erasure, a ledger that cannot give back)."""
        ...


def day_start(now: datetime) -> datetime:
    """The start of `now`'s UTC day (`now` is timezone-aware)."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day_start_ms(now: datetime) -> int:
    """The start of `now`'s UTC day, in epoch milliseconds."""
    return int(day_start(now).timestamp() * 1000)


@dataclass(frozen=True)
class PagesCheckpoint:
    """The pages a tenant's tasks reserved from the start of a UTC day until `until_ms` (written once)."""

    until_ms: int
    pages: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> PagesCheckpoint:
        data = json.loads(raw)
        return cls(until_ms=int(data["until_ms"]), pages=int(data["pages"]))


class KvQuotaLedger:
    """Quotas counted from keys written once each, for KV without compare-and-set (Cloudflare, in-memory).

    KV takes one write per second per key, so nothing is counted in place. Concurrency is one `list` of the
    tenant's `active` markers (written when a task is reserved, removed when it ends); pages per day a `list` of
    today's task index keys, whose metadata carries each task's `limit`, back to the day's latest checkpoint of
    their sum. Two submits at the same moment may both pass; README "Limits and quotas" bounds the overshoot.
    """

    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv

    async def reserve(
        self, tenant_id: str, task_id: str, *, pages: int, quotas: Quotas, now: datetime, tasks: TaskLookup
    ) -> Refusal | None:
        if allowance := quotas.max_pages_per_day:
            settled_ms = int((now.timestamp() - quotas.settle_s) * 1000)
            used = await self.pages_reserved_since(
                tenant_id, day_start_ms(now), stop_above=allowance - pages, settled_ms=settled_ms, tasks=tasks
            )
            if used + pages > allowance:
                return Refusal(PAGES_PER_DAY, used)
        if allowance := quotas.max_concurrent_tasks:
            active = await self._active(tenant_id, allowance, tasks)
            if active >= allowance:
                return Refusal(CONCURRENT_TASKS, active)
        # Removed when the task ends (`release`); the TTL only bounds a marker whose removal was lost.
        await self.kv.put(keys.active_task(tenant_id, task_id), "1", ttl_s=ACTIVE_MARKER_TTL_S)
        return None

    async def release(self, tenant_id: str, task_id: str, *, used_pages: int | None = None) -> None:
        """Pages are not given back: a day's sum is of index keys and checkpoints written once each, and a
        give-back would be one more listing per submit. (With the Durable Object, Cloudflare gives back.)"""
        await self.kv.delete(keys.active_task(tenant_id, task_id))

    async def _active(self, tenant_id: str, allowance: int, tasks: TaskLookup) -> int:
        marked = await self.active_task_ids(tenant_id, limit=allowance)
        if len(marked) < allowance:
            return len(marked)
        # At the limit: first drop markers whose task has ended but whose removal was lost (a crash after the
        # final save). Listings lag behind deletes, so those are subtracted rather than listed again.
        active = len(marked) - min(len(marked), MAX_MARKER_CHECKS)
        for task_id in marked[:MAX_MARKER_CHECKS]:
            if await tasks.has_ended(tenant_id, task_id):
                await self.release(tenant_id, task_id)
            else:
                active += 1
        return active

    async def active_task_ids(self, tenant_id: str, *, limit: int) -> list[str]:
        """Up to `limit` tasks of the tenant marked queued or running (no order)."""
        found: list[str] = []
        cursor: str | None = None
        while len(found) < limit:
            page = await self.kv.list(
                prefix=keys.active_tasks_prefix(tenant_id), limit=min(limit - len(found), MAX_LIST_LIMIT), cursor=cursor
            )
            found += [keys.task_id_of_index(info.name) for info in page.keys]
            if page.list_complete or page.cursor is None:
                break
            cursor = page.cursor
        return found[:limit]

    async def pages_reserved_since(
        self, tenant_id: str, day_ms: int, *, stop_above: int, settled_ms: int, tasks: TaskLookup
    ) -> int:
        """The sum of `limit` over the tenant's tasks created since `day_ms` (a UTC midnight), counted until it
        exceeds `stop_above`: the day's latest checkpoint, plus the index keys newer than it (the index lists
        newest first, so the listing stops at the checkpoint). Keys older than `settled_ms` are assumed visible
        everywhere; once enough of them are past the checkpoint, a new one is written (once: its own key)."""
        checkpoint = await self._latest_pages_checkpoint(tenant_id, day_ms)
        total, settled, settled_keys = checkpoint.pages, 0, 0
        cursor: str | None = None
        done, size = False, 128
        while not done:
            # Usually a hundred or two keys are needed: growing pages save reading a thousand each time.
            page = await self.kv.list(prefix=keys.task_index_prefix(tenant_id), limit=size, cursor=cursor)
            size = min(size * 4, MAX_LIST_LIMIT)
            for info in page.keys:
                created_ms = keys.created_ms_of_index(info.name)
                if created_ms < checkpoint.until_ms:
                    done = True
                    break
                pages = await self._task_pages(tenant_id, info, tasks)
                total += pages
                if total > stop_above:
                    return total
                if created_ms < settled_ms:
                    settled, settled_keys = settled + pages, settled_keys + 1
            done = done or page.list_complete or page.cursor is None
            cursor = page.cursor
        if settled_keys >= PAGES_CHECKPOINT_EVERY and settled_ms > checkpoint.until_ms:
            record = PagesCheckpoint(until_ms=settled_ms, pages=checkpoint.pages + settled)
            key = keys.pages_checkpoint(tenant_id, day_ms, settled_ms)
            await self.kv.put(key, record.to_json(), ttl_s=PAGES_CHECKPOINT_TTL_S)
        return total

    async def _latest_pages_checkpoint(self, tenant_id: str, day_ms: int) -> PagesCheckpoint:
        page = await self.kv.list(prefix=keys.pages_checkpoints_prefix(tenant_id, day_ms), limit=1)
        raw = await self.kv.get(page.keys[0].name) if page.keys else None
        return PagesCheckpoint.from_json(raw) if raw else PagesCheckpoint(until_ms=day_ms, pages=0)

    async def _task_pages(self, tenant_id: str, info: KeyInfo, tasks: TaskLookup) -> int:
        limit = (info.metadata or {}).get("limit")
        if isinstance(limit, int):
            return limit
        task = await tasks.get(tenant_id, keys.task_id_of_index(info.name))  # indexed before the metadata
        return task.request.limit if task else 0

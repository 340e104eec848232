"""Quotas and first-writer-wins keys over the coordination port: exact wherever the port is (a Durable Object per
tenant on Cloudflare), where KV alone can only bound the overshoot; standard library only."""

from __future__ import annotations

from datetime import datetime

from shared.coordination import Coordinator, QuotaLimits
from shared.ports import KeyValueStore
from shared.stores.quotas import CONCURRENT_TASKS, Quotas, Refusal, TaskLookup


class CoordinatedQuotaLedger:
    """`QuotaLedger` over the port: the tenant's object checks and counts in one step, so no two submits, from
    any isolate or location, can take the last place. At the concurrency limit, the oldest holders whose tasks
    ended without releasing their place (a crash after the final save) are freed and the reservation tried once
    more, as the SQLite ledger does."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    async def reserve(
        self, tenant_id: str, task_id: str, *, pages: int, quotas: Quotas, now: datetime, tasks: TaskLookup
    ) -> Refusal | None:
        limits = QuotaLimits(quotas.max_concurrent_tasks, quotas.max_pages_per_day)
        refusal = await self.coordinator.reserve_quota(tenant_id, task_id, pages=pages, limits=limits, now=now)
        if refusal is None or refusal.quota != CONCURRENT_TASKS:
            return refusal
        freed = False
        for holder in refusal.holders:
            if await tasks.has_ended(tenant_id, holder):
                await self.coordinator.release_quota(tenant_id, holder)
                freed = True
        if not freed:
            return refusal
        return await self.coordinator.reserve_quota(tenant_id, task_id, pages=pages, limits=limits, now=now)

    async def release(self, tenant_id: str, task_id: str, *, used_pages: int | None = None) -> None:
        await self.coordinator.release_quota(tenant_id, task_id, used_pages=used_pages)


class CoordinatedReservations:
    """`Reservations` (idempotency keys) as compare-and-set on the port: exact across isolates and locations.
    What the port decided is copied to `kv` under the same key, so readers of KV (a replay's lookup, exports)
    see what they always saw; the port alone decides who wins."""

    def __init__(self, coordinator: Coordinator, kv: KeyValueStore) -> None:
        self.coordinator = coordinator
        self.kv = kv

    async def reserve(self, key: str, value: str, *, ttl_s: float) -> str | None:
        swap = await self.coordinator.swap_key(key, expected=None, value=value, ttl_s=ttl_s)
        if not swap.done:
            return swap.held
        await self.kv.put(key, value, ttl_s=ttl_s)
        return None

    async def replace(self, key: str, expected: str, value: str, *, ttl_s: float) -> bool:
        if not (await self.coordinator.swap_key(key, expected=expected, value=value, ttl_s=ttl_s)).done:
            return False
        await self.kv.put(key, value, ttl_s=ttl_s)
        return True

    async def release(self, key: str, expected: str) -> None:
        if (await self.coordinator.swap_key(key, expected=expected, value=None, ttl_s=0)).done:
            await self.kv.delete(key)

"""`Reservations` over a plain KV store (Workers KV has no compare-and-set): exact within one process or isolate,
best effort across them, within the bound the README states ("Idempotency")."""

from __future__ import annotations

import asyncio
import weakref

from shared.ports import KeyValueStore


class KvReservations:
    """Read, then write: a per-key lock makes the pair atomic here; another isolate may still race the pair.

    On Cloudflare a write is visible at once in its own location and within about 60 s elsewhere, so duplicates
    that arrive at two locations inside that window can both win. The test of this module shows what holds.
    """

    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def reserve(self, key: str, value: str, *, ttl_s: float) -> str | None:
        async with self._lock(key):
            held = await self.kv.get(key)
            if held is not None:
                return held
            await self.kv.put(key, value, ttl_s=ttl_s)
            return None

    async def replace(self, key: str, expected: str, value: str, *, ttl_s: float) -> bool:
        async with self._lock(key):
            if await self.kv.get(key) != expected:
                return False
            await self.kv.put(key, value, ttl_s=ttl_s)
            return True

    async def release(self, key: str, expected: str) -> None:
        async with self._lock(key):
            if await self.kv.get(key) == expected:
                await self.kv.delete(key)

"""Task, checkpoint and page records over the KV port, and cursor pagination of their listings."""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel

from shared import keys
from shared.errors import InvalidInput
from shared.models import TERMINAL, CrawlState, Page, Progress, Task, TaskStatus
from shared.ports import KeyValueStore, KVWrite, Reservations, scan

T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: A page of `GET /tasks/{id}/pages` stops growing past this many bytes of JSON.
MAX_PAGES_RESPONSE_BYTES = 10 * 1024 * 1024


class Claim(BaseModel):
    """Which delivery runs a task's slice; a second delivery of the same slice backs off while it is fresh."""

    slice: int
    owner: str
    expires_at: float


class IdempotencyRecord(BaseModel):
    """An Idempotency-Key's reservation: the task it makes (written after it) and the body it was used with."""

    task_id: str
    request_hash: str
    #: When the key was reserved (epoch seconds); a reservation with no task long after it was abandoned.
    reserved_at: float = 0.0


@dataclass(frozen=True)
class Cursor:
    """Position in a KV listing that survives inserts: the KV cursor of the page and the last key returned."""

    kv_cursor: str | None
    last_key: str

    def encode(self) -> str:
        raw = json.dumps({"c": self.kv_cursor, "k": self.last_key}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str | None) -> Cursor | None:
        if not token:
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            kv_cursor, last_key = data["c"], data["k"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise InvalidInput("invalid cursor") from None
        if not isinstance(last_key, str) or not (kv_cursor is None or isinstance(kv_cursor, str)):
            raise InvalidInput("invalid cursor")
        return cls(kv_cursor, last_key)


async def paginate(
    kv: KeyValueStore,
    prefix: str,
    load: Callable[[str], Awaitable[T | None]],
    *,
    cursor: str | None,
    limit: int,
    size: Callable[[T], int] | None = None,
    max_bytes: int = MAX_PAGES_RESPONSE_BYTES,
    after_key: str | None = None,
) -> tuple[list[T], str | None]:
    """Up to `limit` loaded items under `prefix` after `cursor` (or after the key `after_key`, found by
    scanning from the start); `load` returns None to skip a key."""
    position = Cursor.decode(cursor)
    kv_cursor = position.kv_cursor if position else None
    after = position.last_key if position else (after_key or "")
    items: list[T] = []
    total = 0
    while True:
        page = await kv.list(prefix=prefix, cursor=kv_cursor)
        for info in page.keys:
            if info.name <= after:
                continue
            item = await load(info.name)
            after = info.name
            if item is None:
                continue
            items.append(item)
            total += size(item) if size else 0
            if len(items) >= limit or total >= max_bytes:
                return items, Cursor(kv_cursor, after).encode()
        if page.list_complete or page.cursor is None:
            return items, None
        kv_cursor = page.cursor


#: A stored page record is its JSON, or above `COMPRESS_OVER` characters this prefix and the JSON deflated and in
#: base64 (KV values are text): pages are mostly text, which deflate shrinks several times.
COMPRESSED = "z1:"
COMPRESS_OVER = 1024


def encode_page(page_json: str) -> str:
    if len(page_json) <= COMPRESS_OVER:
        return page_json
    # Level 1: a few times faster than the default 6 on page JSON, for about 3% larger records.
    return COMPRESSED + base64.b64encode(zlib.compress(page_json.encode(), 1)).decode("ascii")


def decode_page(stored: str) -> str:
    if not stored.startswith(COMPRESSED):
        return stored  # small, or stored before compression
    return zlib.decompress(base64.b64decode(stored[len(COMPRESSED) :])).decode()


async def get_page_json(kv: KeyValueStore, key: str) -> str | None:
    stored = await kv.get(key)
    return None if stored is None else decode_page(stored)


class TaskStore:
    """Reads and writes the records of tasks; both the producer and the consumer use it."""

    def __init__(self, kv: KeyValueStore, reservations: Reservations | None = None) -> None:
        self.kv = kv
        #: Where Idempotency-Keys are reserved; without one (the consumer's store), idempotency is not used.
        self.reservations = reservations

    async def create(self, task: Task) -> None:
        created_ms, micros = divmod((task.created_at - EPOCH) // timedelta(microseconds=1), 1000)
        tenant_id, task_id, kb_id = task.tenant_id, task.task_id, task.request.knowledge_base_id
        limit = task.request.limit
        # Three keys of their own, written at once: one transaction on SQLite, three parallel writes on KV.
        await self.kv.put_many(
            (
                KVWrite(keys.task(tenant_id, task_id), task.model_dump_json()),
                # It carries the task's `limit`: over KV, a day's reserved pages are one listing (stores/quotas.py).
                KVWrite(
                    keys.task_index(tenant_id, created_ms, task_id, micros=micros), task_id, metadata={"limit": limit}
                ),
                KVWrite(keys.kb_task_index(tenant_id, kb_id, created_ms, task_id, micros=micros), task_id),
            )
        )

    async def has_ended(self, tenant_id: str, task_id: str) -> bool:
        """Whether the task's record says it ended; a record not visible (yet) has not."""
        task = await self.get(tenant_id, task_id)
        return task is not None and task.status in TERMINAL

    async def save(self, task: Task) -> None:
        await self.kv.put(keys.task(task.tenant_id, task.task_id), task.model_dump_json())

    async def get(self, tenant_id: str, task_id: str) -> Task | None:
        raw = await self.kv.get(keys.task(tenant_id, task_id))
        return Task.model_validate_json(raw) if raw else None

    async def list_tasks(
        self,
        tenant_id: str,
        *,
        knowledge_base_id: str | None = None,
        status: TaskStatus | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Task], str | None]:
        if knowledge_base_id is None:
            prefix = keys.task_index_prefix(tenant_id)
        else:
            prefix = keys.kb_task_index_prefix(tenant_id, knowledge_base_id)

        async def load(key: str) -> Task | None:
            task = await self.get(tenant_id, keys.task_id_of_index(key))
            return task if task is not None and (status is None or task.status == status) else None

        return await paginate(self.kv, prefix, load, cursor=cursor, limit=limit)

    # --- cancellation: a separate key so the producer never races the consumer on the task record
    async def request_cancel(self, tenant_id: str, task_id: str) -> None:
        await self.kv.put(keys.task_cancel(tenant_id, task_id), "1")

    async def cancel_requested(self, tenant_id: str, task_id: str) -> bool:
        return await self.kv.get(keys.task_cancel(tenant_id, task_id)) is not None

    # --- consumer-owned records
    async def get_state(self, tenant_id: str, task_id: str) -> CrawlState | None:
        raw = await self.kv.get(keys.task_state(tenant_id, task_id))
        return CrawlState.model_validate_json(raw) if raw else None

    async def save_state(self, tenant_id: str, task_id: str, state: CrawlState) -> None:
        await self.kv.put(keys.task_state(tenant_id, task_id), state.model_dump_json())

    async def discard_crawl_state(self, tenant_id: str, task_id: str) -> None:
        await self.kv.delete(keys.task_state(tenant_id, task_id))
        await self.kv.delete(keys.task_progress(tenant_id, task_id))

    async def save_live_progress(self, tenant_id: str, task_id: str, progress: Progress) -> None:
        await self.kv.put(keys.task_progress(tenant_id, task_id), progress.model_dump_json())

    async def live_progress(self, tenant_id: str, task_id: str) -> Progress | None:
        raw = await self.kv.get(keys.task_progress(tenant_id, task_id))
        return Progress.model_validate_json(raw) if raw else None
        await self.kv.delete(keys.task_claim(tenant_id, task_id))

    async def get_claim(self, tenant_id: str, task_id: str) -> Claim | None:
        raw = await self.kv.get(keys.task_claim(tenant_id, task_id))
        return Claim.model_validate_json(raw) if raw else None

    async def save_claim(self, tenant_id: str, task_id: str, claim: Claim) -> None:
        await self.kv.put(keys.task_claim(tenant_id, task_id), claim.model_dump_json())

    async def put_page(self, tenant_id: str, task_id: str, seq: int, page: Page) -> int:
        """Store the page; the length of its JSON."""
        page_json = page.model_dump_json(exclude_none=False)
        await self.kv.put(keys.page(tenant_id, task_id, seq), encode_page(page_json))
        return len(page_json)

    async def get_page_json(self, tenant_id: str, task_id: str, seq: int) -> str | None:
        return await get_page_json(self.kv, keys.page(tenant_id, task_id, seq))

    async def delete_pages_from(self, tenant_id: str, task_id: str, seq: int) -> int:
        """Delete pages numbered `seq` and above: leftovers of a slice that died before its checkpoint."""
        stale = [
            info.name
            async for info in scan(self.kv, keys.pages_prefix(tenant_id, task_id))
            if keys.page_seq(info.name) >= seq
        ]
        for name in stale:
            await self.kv.delete(name)
        return len(stale)

    async def list_pages_json(
        self, tenant_id: str, task_id: str, *, cursor: str | None, limit: int
    ) -> tuple[list[str], str | None]:
        """Stored page records as JSON text, in crawl order (served without re-parsing)."""

        async def load(key: str) -> str | None:
            return await get_page_json(self.kv, key)

        return await paginate(
            self.kv, keys.pages_prefix(tenant_id, task_id), load, cursor=cursor, limit=limit, size=len
        )

    # --- idempotency: a key is reserved (first writer wins) before its task is written
    def _reservations(self) -> Reservations:
        if self.reservations is None:
            raise RuntimeError("this TaskStore was built without reservations")
        return self.reservations

    async def get_idempotency(self, tenant_id: str, idempotency_key: str) -> IdempotencyRecord | None:
        raw = await self.kv.get(keys.idempotency(tenant_id, idempotency_key))
        return IdempotencyRecord.model_validate_json(raw) if raw else None

    async def reserve_idempotency(
        self, tenant_id: str, idempotency_key: str, record: IdempotencyRecord, *, ttl_s: float
    ) -> IdempotencyRecord | None:
        """None if `record` now holds the key; else the record that already did."""
        key = keys.idempotency(tenant_id, idempotency_key)
        held = await self._reservations().reserve(key, record.model_dump_json(), ttl_s=ttl_s)
        return None if held is None else IdempotencyRecord.model_validate_json(held)

    async def take_over_idempotency(
        self, tenant_id: str, idempotency_key: str, old: IdempotencyRecord, new: IdempotencyRecord, *, ttl_s: float
    ) -> bool:
        """Replace an abandoned reservation `old` with `new`, unless another request did first."""
        key = keys.idempotency(tenant_id, idempotency_key)
        return await self._reservations().replace(key, old.model_dump_json(), new.model_dump_json(), ttl_s=ttl_s)

    async def release_idempotency(self, tenant_id: str, idempotency_key: str, record: IdempotencyRecord) -> None:
        """Give up a reservation whose task was never made, so that a retry with the key can make it."""
        key = keys.idempotency(tenant_id, idempotency_key)
        await self._reservations().release(key, record.model_dump_json())

"""Ports: the small interfaces every backend implements, shaped like Cloudflare's KV and Queues bindings
and with their semantics, so that what passes locally holds there.
"""

# Semantics follow Cloudflare so that what passes locally holds there: KV values are strings, `list` is
# ordered by key with an opaque cursor and at most 1000 keys a call, TTLs are seconds; the queue delivers
# at least once, in no guaranteed order, with per-message ack / retry(delay), an attempts counter, and a
# dead-letter queue after `max_retries` failed deliveries.

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Clock = Callable[[], float]
"""Seconds since the epoch; `time.time` in production, a fake in tests."""

JsonObject = dict[str, Any]

MAX_LIST_LIMIT = 1000
MIN_TTL_S = 60  # Cloudflare KV refuses expirations less than 60 s ahead.


@dataclass(frozen=True)
class KeyInfo:
    name: str
    #: Absolute expiry (epoch seconds) if the key has a TTL.
    expiration: float | None = None
    metadata: JsonObject | None = None


@dataclass(frozen=True)
class ListResult:
    keys: list[KeyInfo]
    list_complete: bool
    #: Pass back to `list` for the next page; None on the last page.
    cursor: str | None = None


@dataclass(frozen=True)
class KVWrite:
    """One key of `KeyValueStore.put_many`, with what `put` takes."""

    key: str
    value: str
    ttl_s: float | None = None
    metadata: JsonObject | None = None


class KeyValueStore(Protocol):
    """Workers KV: get / put with TTL / delete / list by prefix with a cursor."""

    async def get(self, key: str) -> str | None: ...

    async def put(
        self, key: str, value: str, *, ttl_s: float | None = None, metadata: JsonObject | None = None
    ) -> None: ...

    async def put_many(self, writes: Sequence[KVWrite]) -> None:
        """Each write as `put` would do it, every one checked before any is made. Embedded stores make them in one
        transaction (all or none); Workers KV makes them in parallel (a failure may leave some made)."""
        ...

    async def delete(self, key: str) -> None: ...

    async def list(self, *, prefix: str = "", limit: int = MAX_LIST_LIMIT, cursor: str | None = None) -> ListResult: ...

    async def scrub(self) -> None:
        """After an erasure: leave nothing of deleted values recoverable from this store's own files (SQLite: its
        freed pages are zeroed as they are freed; this empties the WAL). Nothing to do where storage is managed."""
        ...


class Reservations(Protocol):
    """First writer wins on a key: exact where the backend can compare and set (SQLite, memory), best effort
    over Workers KV (`shared.stores.reservations.KvReservations`, whose bound the README states)."""

    async def reserve(self, key: str, value: str, *, ttl_s: float) -> str | None:
        """Write `value` if `key` is absent (or expired) and return None; else return the value it holds."""
        ...

    async def replace(self, key: str, expected: str, value: str, *, ttl_s: float) -> bool:
        """Write `value` only if `key` still holds `expected`; whether it did."""
        ...

    async def release(self, key: str, expected: str) -> None:
        """Delete `key` only if it still holds `expected` (a reservation its owner gives up)."""
        ...


@dataclass(frozen=True)
class Message:
    """One delivery of a queued message. `lease` fences ack/retry to this delivery."""

    id: str
    body: JsonObject
    #: Deliveries so far, this one included (starts at 1, as on Cloudflare).
    attempts: int
    lease: str = field(default="", compare=False)


class JobQueue(Protocol):
    """The producer side of a queue (Cloudflare's queue producer binding)."""

    async def send(self, body: JsonObject, *, delay_s: float = 0) -> None: ...


class QueueReceiver(Protocol):
    """The consumer side of a local queue. On Cloudflare the runtime pushes batches instead."""

    #: Deliveries allowed before a message moves to the dead-letter queue is `max_retries + 1`.
    max_retries: int

    async def receive(self, *, max_messages: int, wait_s: float = 0) -> list[Message]: ...

    async def ack(self, message: Message) -> None: ...

    async def retry(self, message: Message, *, delay_s: float = 0) -> None: ...


class LocalQueue(JobQueue, QueueReceiver, Protocol):
    """A queue a local process both sends to and receives from (SQLite, memory)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class ObjectWriter(Protocol):
    """One object being written in pieces; it exists (whole) only once `close` returns."""

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...

    async def abort(self) -> None: ...


class ObjectStore(Protocol):
    """An R2 bucket, as far as backups need one: streamed writes, ranged reads, listing by prefix, deletes."""

    def writer(self, key: str) -> ObjectWriter: ...

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if there is no such object."""
        ...

    async def read(self, key: str, offset: int, length: int) -> bytes:
        """Bytes `offset` … `offset + length` of an existing object (fewer at its end)."""
        ...

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object under `prefix`, in key order."""
        ...

    async def delete(self, key: str) -> None: ...


async def scan(kv: KeyValueStore, prefix: str) -> AsyncIterator[KeyInfo]:
    """Every key under `prefix`, following cursors (Cloudflare may return short or empty pages)."""
    cursor: str | None = None
    while True:
        page = await kv.list(prefix=prefix, cursor=cursor)
        for info in page.keys:
            yield info
        if page.list_complete or page.cursor is None:
            return
        cursor = page.cursor

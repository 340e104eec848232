"""In-process KV and queue with Cloudflare's semantics, for tests and `scrapeq dev --memory`.
Values and bodies are stored serialised, so callers never share mutable state with the store.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from shared.backends.base import QueueStats
from shared.backends.kvlimits import (
    check_delay,
    check_key,
    check_list_limit,
    check_receive,
    check_value,
    decode_cursor,
    encode_body,
    encode_cursor,
    encode_metadata,
    expiry_for,
    new_message_id,
)
from shared.backends.wakeup import Wakeup, receive_waiting
from shared.ports import MAX_LIST_LIMIT, Clock, JsonObject, KeyInfo, KVWrite, ListResult, Message

logger = logging.getLogger(__name__)


@dataclass
class _Item:
    value: str
    expires_at: float | None
    metadata: str | None


class MemoryKV:
    """Workers KV in a dict, plus a sorted key list for ordered, paginated `list`."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._items: dict[str, _Item] = {}
        self._keys: list[str] = []  # sorted; str order is code-point order, i.e. UTF-8 byte order

    def _live(self, key: str, now: float) -> _Item | None:
        item = self._items.get(key)
        if item is not None and item.expires_at is not None and item.expires_at <= now:
            self._remove(key)  # expired keys are purged when they are next touched
            return None
        return item

    def _remove(self, key: str) -> None:
        if self._items.pop(key, None) is not None:
            del self._keys[bisect.bisect_left(self._keys, key)]

    async def get(self, key: str) -> str | None:
        check_key(key)
        item = self._live(key, self._clock())
        return None if item is None else item.value

    async def put(
        self, key: str, value: str, *, ttl_s: float | None = None, metadata: JsonObject | None = None
    ) -> None:
        check_key(key)
        check_value(value)
        self._set(key, _Item(value, expiry_for(ttl_s, self._clock()), encode_metadata(metadata)))

    async def put_many(self, writes: Sequence[KVWrite]) -> None:
        now = self._clock()
        items = []
        for write in writes:  # every write checked before any is made: all or none
            check_key(write.key)
            check_value(write.value)
            items.append((write.key, _Item(write.value, expiry_for(write.ttl_s, now), encode_metadata(write.metadata))))
        for key, item in items:
            self._set(key, item)

    def _set(self, key: str, item: _Item) -> None:
        if key not in self._items:
            bisect.insort(self._keys, key)
        self._items[key] = item

    async def delete(self, key: str) -> None:
        check_key(key)
        self._remove(key)

    async def scrub(self) -> None:
        """Deleted values are gone with their dict entries."""

    # --- Reservations: exact, as nothing here awaits between the check and the write
    async def reserve(self, key: str, value: str, *, ttl_s: float) -> str | None:
        held = await self.get(key)
        if held is not None:
            return held
        await self.put(key, value, ttl_s=ttl_s)
        return None

    async def replace(self, key: str, expected: str, value: str, *, ttl_s: float) -> bool:
        if await self.get(key) != expected:
            return False
        await self.put(key, value, ttl_s=ttl_s)
        return True

    async def release(self, key: str, expected: str) -> None:
        if await self.get(key) == expected:
            await self.delete(key)

    async def list(self, *, prefix: str = "", limit: int = MAX_LIST_LIMIT, cursor: str | None = None) -> ListResult:
        check_list_limit(limit)
        start = bisect.bisect_left(self._keys, prefix)
        if cursor is not None:
            start = max(start, bisect.bisect_right(self._keys, decode_cursor(cursor)))
        now = self._clock()
        found: list[KeyInfo] = []
        for index in range(start, len(self._keys)):
            key = self._keys[index]
            if not key.startswith(prefix) or len(found) > limit:
                break
            item = self._items[key]
            if item.expires_at is None or item.expires_at > now:
                meta = None if item.metadata is None else json.loads(item.metadata)
                found.append(KeyInfo(key, item.expires_at, meta))
        if len(found) <= limit:
            return ListResult(found, list_complete=True)
        return ListResult(found[:limit], list_complete=False, cursor=encode_cursor(found[limit - 1].name))

    async def ping(self) -> None:
        """Always reachable."""

    async def aclose(self) -> None:
        """Nothing to release."""


@dataclass
class _Stored:
    id: str
    body: str
    seq: int
    attempts: int = 0
    visible_at: float = 0.0
    #: Set while delivered (and after the lease lapsed, until redelivery); None when waiting or retried.
    lease: str | None = None
    #: Bumped on every reschedule; heap entries with an older version are stale.
    version: int = 0


class MemoryQueue:
    """A queue with leases, retries and a dead-letter queue, ordered by (visible time, send order)."""

    def __init__(
        self,
        name: str,
        *,
        clock: Clock = time.time,
        visibility_timeout_s: float,
        max_retries: int,
        dead_letter: MemoryQueue | None = None,
        poll_interval_s: float = 0.05,
    ) -> None:
        if visibility_timeout_s <= 0 or max_retries < 0 or poll_interval_s <= 0:
            raise ValueError("visibility_timeout_s and poll_interval_s must be > 0, max_retries ≥ 0")
        self.name = name
        self.max_retries = max_retries
        self._clock = clock
        self._visibility_timeout_s = visibility_timeout_s
        self._dead_letter = dead_letter
        self._poll_interval_s = poll_interval_s
        self._messages: dict[str, _Stored] = {}
        self._heap: list[tuple[float, int, int, str]] = []  # (visible_at, seq, version, id)
        self._seq = itertools.count()
        self._wakeup = Wakeup()

    def _schedule(self, stored: _Stored, visible_at: float) -> None:
        stored.visible_at = visible_at
        stored.version += 1
        heapq.heappush(self._heap, (visible_at, stored.seq, stored.version, stored.id))

    def _add(self, message_id: str, body: str, visible_at: float) -> None:
        stored = _Stored(message_id, body, next(self._seq))
        self._messages[message_id] = stored
        self._schedule(stored, visible_at)
        if visible_at <= self._clock():
            self._wakeup.fire()

    async def send(self, body: JsonObject, *, delay_s: float = 0) -> None:
        text = encode_body(body)
        check_delay(delay_s)
        self._add(new_message_id(), text, self._clock() + delay_s)

    def _head(self) -> _Stored | None:
        """The earliest-scheduled message, dropping stale heap entries on the way."""
        while self._heap:
            _, _, version, message_id = self._heap[0]
            stored = self._messages.get(message_id)
            if stored is not None and stored.version == version:
                return stored
            heapq.heappop(self._heap)
        return None

    def _deliver(self, max_messages: int) -> tuple[list[Message], float | None]:
        now = self._clock()
        delivered: list[Message] = []
        while len(delivered) < max_messages and (stored := self._head()) is not None and stored.visible_at <= now:
            heapq.heappop(self._heap)
            if stored.lease is not None and stored.attempts > self.max_retries:
                self._dead_letter_message(stored)  # its last lease lapsed: that delivery failed too
                continue
            stored.attempts += 1
            stored.lease = secrets.token_hex(16)
            self._schedule(stored, now + self._visibility_timeout_s)
            delivered.append(Message(stored.id, json.loads(stored.body), stored.attempts, stored.lease))
        head = self._head()
        return delivered, None if head is None else head.visible_at

    async def receive(self, *, max_messages: int, wait_s: float = 0) -> list[Message]:
        check_receive(max_messages, wait_s)

        async def take() -> tuple[list[Message], float | None]:
            return self._deliver(max_messages)

        return await receive_waiting(
            take, self._wakeup, wait_s=wait_s, poll_interval_s=self._poll_interval_s, clock=self._clock
        )

    def _current(self, message: Message, action: str) -> _Stored | None:
        stored = self._messages.get(message.id)
        if stored is None or stored.lease is None or stored.lease != message.lease:
            logger.debug("stale %s ignored", action, extra={"queue": self.name, "message_id": message.id})
            return None
        return stored

    async def ack(self, message: Message) -> None:
        if self._current(message, "ack") is not None:
            del self._messages[message.id]

    async def retry(self, message: Message, *, delay_s: float = 0) -> None:
        check_delay(delay_s)
        stored = self._current(message, "retry")
        if stored is None:
            return
        if stored.attempts > self.max_retries:
            self._dead_letter_message(stored)
            return
        stored.lease = None
        self._schedule(stored, self._clock() + delay_s)
        if delay_s == 0:
            self._wakeup.fire()

    def _dead_letter_message(self, stored: _Stored) -> None:
        del self._messages[stored.id]
        extra = {"queue": self.name, "message_id": stored.id, "attempts": stored.attempts}
        if self._dead_letter is None:
            logger.warning("message dropped after its last retry (no dead-letter queue)", extra=extra)
            return
        logger.warning("message moved to dead-letter queue %s", self._dead_letter.name, extra=extra)
        self._dead_letter._add(stored.id, stored.body, self._clock())

    async def stats(self) -> QueueStats:
        """Counts of visible, leased and delayed messages (for `/health`)."""
        now = self._clock()
        visible = sum(1 for s in self._messages.values() if s.visible_at <= now)
        leased = sum(1 for s in self._messages.values() if s.visible_at > now and s.lease is not None)
        return QueueStats(visible=visible, leased=leased, delayed=len(self._messages) - visible - leased)

    async def size(self) -> int:
        """Messages held, in any state."""
        return len(self._messages)

    async def ping(self) -> None:
        """Always reachable."""

    async def aclose(self) -> None:
        """Nothing to release."""

"""A `HostGate` whose slots, spacing and pauses are also taken from the coordination port, so politeness holds
across every process or isolate that shares it (the host's Durable Object on Cloudflare, the SQLite file locally)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable

from consumer.crawl.hostgate import HostGate, host_key
from shared.coordination import Coordinator
from shared.errors import StorageError

log = logging.getLogger(__name__)

#: When the port cannot be reached, a request waits at least this long (or the host's delay) and goes on under the
#: process's own gate: slower, never faster, than with the port.
FALLBACK_DELAY_S = 1.0
#: Hosts whose delay a process remembers knowing (the oldest forgotten first: they then ask the shared record).
MAX_KNOWN_HOSTS = 10_000


class SharedHostGate(HostGate):
    """This process's gate first (its share of the slots, its spacing and pauses), then a slot of the host's shared
    record: at most `max_concurrency` requests at once and starts `delay_s` apart across all sharers, and a pause
    one sharer was asked for (429/503) keeps every sharer off the host. The Crawl-delay one sharer read in robots.txt
    spaces every sharer's requests, its robots.txt fetch included (before anyone has read it: 1 s apart). A slot
    whose holder dies is free again after `lease_s`. Each request costs two round trips to the port (acquire,
    release), plus one per wait."""

    def __init__(
        self,
        coordinator: Coordinator,
        *,
        max_concurrency: int,
        min_delay_s: float = 0.0,
        max_delay_s: float = 10.0,
        lease_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_concurrency=max_concurrency, min_delay_s=min_delay_s, max_delay_s=max_delay_s, clock=clock)
        self.coordinator = coordinator
        self.lease_s = lease_s
        self._pending: set[asyncio.Task[None]] = set()
        #: Hosts whose robots.txt this process has read (their delay is known here), most recent last.
        self._known: dict[str, None] = {}

    def crawl_delay(self, url: str, delay_s: float | None) -> None:
        super().crawl_delay(url, delay_s)
        key = host_key(url)
        self._known.pop(key, None)
        self._known[key] = None
        if len(self._known) > MAX_KNOWN_HOSTS:
            del self._known[next(iter(self._known))]

    @contextlib.asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        async with super().slot(url):
            host, holder = host_key(url), secrets.token_hex(8)
            shared = await self._acquire(host, holder, url)
            try:
                yield
            finally:
                if shared:
                    await self._release(host, holder, 0.0)

    def pause(self, url: str, seconds: float) -> None:
        super().pause(url, seconds)
        pause_s = min(max(seconds, 0.0), self.max_delay_s)
        # `pause` is synchronous (called between a response and the next attempt): the shared pause goes out now.
        task = asyncio.get_running_loop().create_task(self._release(host_key(url), None, pause_s))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _acquire(self, host: str, holder: str, url: str) -> bool:
        """Wait for a shared slot; False when the port failed (the request then goes on after a fallback wait)."""
        while True:
            # The delay this process knows from robots.txt, or None before it read it (a robots.txt fetch):
            # then the host's shared record says (another sharer may have read it).
            delay_s = self.delay_of(url) if host in self._known else None
            try:
                turn = await self.coordinator.acquire_host(
                    host, holder, max_concurrency=self.max_concurrency, delay_s=delay_s, lease_s=self.lease_s
                )
            except StorageError as exc:
                log.warning("host slot of %s unavailable (%s): going on alone, slower", host, exc)
                await asyncio.sleep(max(delay_s or 0.0, FALLBACK_DELAY_S))
                return False
            if turn.granted:
                return True
            await asyncio.sleep(max(turn.wait_s, 0.001))

    async def _release(self, host: str, holder: str | None, pause_s: float) -> None:
        try:
            await self.coordinator.release_host(host, holder, pause_s=pause_s)
        except StorageError as exc:  # the slot frees itself when its lease ends
            log.warning("host slot of %s not released (%s); it frees after %.0f s", host, exc, self.lease_s)

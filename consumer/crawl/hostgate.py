"""Per-host politeness for one consumer process: concurrency, spacing (Crawl-delay) and pauses after 429/503."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.urls import DEFAULT_PORTS

#: Idle hosts are forgotten once this many are known (a long-running worker sees many hosts).
MAX_HOSTS = 10_000


@dataclass
class _Host:
    slots: asyncio.Semaphore
    delay_s: float
    #: Monotonic time before which no request may start: spacing after the last start.
    next_start: float = 0.0
    #: Monotonic time before which no request may start: a pause the server asked for.
    paused_until: float = 0.0
    users: int = 0


class HostGate:
    """Concurrency, spacing and pauses per host, shared by every visit of the process (robots.txt too).

    A host (name and port) gets at most `max_concurrency` requests at once, request starts at least its delay
    apart (`min_delay_s`, raised by the host's robots.txt `Crawl-delay` up to `max_delay_s`), and no start at all
    while it is paused after a 429/503. The gate is per process: several worker processes (or Cloudflare isolates)
    each keep their own, so N processes may send N × the limit (see README "Crawl rules").
    """

    def __init__(
        self,
        *,
        max_concurrency: int,
        min_delay_s: float = 0.0,
        max_delay_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_hosts: int = MAX_HOSTS,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.min_delay_s = min_delay_s
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._max_hosts = max_hosts
        self._hosts: dict[str, _Host] = {}

    @contextlib.asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        """Hold one of the host's slots, entered no sooner than its spacing and any pause allow."""
        host = self._host(host_key(url))
        host.users += 1
        try:
            async with host.slots:
                await self._wait_turn(host)
                yield
        finally:
            host.users -= 1

    def crawl_delay(self, url: str, delay_s: float | None) -> None:
        """Apply the host's robots.txt `Crawl-delay` (capped at `max_delay_s`); never below `min_delay_s`."""
        host = self._host(host_key(url))
        host.delay_s = max(self.min_delay_s, min(max(delay_s or 0.0, 0.0), self.max_delay_s))

    def pause(self, url: str, seconds: float) -> None:
        """No request to the host starts within `seconds` (capped at `max_delay_s`) from now."""
        host = self._host(host_key(url))
        until = self._clock() + min(max(seconds, 0.0), self.max_delay_s)
        host.paused_until = max(host.paused_until, until)

    def delay_of(self, url: str) -> float:
        """The host's current spacing between request starts."""
        host = self._hosts.get(host_key(url))
        return host.delay_s if host is not None else self.min_delay_s

    def wait_s(self, url: str) -> float:
        """About how long a new request to the host would wait for its turn: the pause or spacing left, plus
        one spacing per request already holding or awaiting a slot (slow answers ahead of it not counted)."""
        host = self._hosts.get(host_key(url))
        if host is None:
            return 0.0
        now = self._clock()
        return max(host.next_start, host.paused_until, now) - now + host.users * host.delay_s

    async def _wait_turn(self, host: _Host) -> None:
        # Re-checked after every sleep: a pause may arrive, or another holder may take the next start.
        while True:
            now = self._clock()
            start = max(host.next_start, host.paused_until)
            if start <= now:
                host.next_start = now + host.delay_s
                return
            await asyncio.sleep(start - now)

    def _host(self, key: str) -> _Host:
        host = self._hosts.get(key)
        if host is None:
            if len(self._hosts) >= self._max_hosts:
                self._forget_idle()
            host = self._hosts[key] = _Host(asyncio.Semaphore(self.max_concurrency), self.min_delay_s)
        return host

    def _forget_idle(self) -> None:
        now = self._clock()
        idle = [
            key
            for key, host in self._hosts.items()
            if host.users == 0 and host.next_start <= now and host.paused_until <= now
        ]
        for key in idle:
            del self._hosts[key]


def host_key(url: str) -> str:
    """`host:port` of a URL, the port made explicit: http://a.test and http://a.test:80 are one host."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{(parts.hostname or '').lower()}:{port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)}"

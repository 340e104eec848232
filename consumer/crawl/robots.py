"""robots.txt per RFC 9309, fetched once per origin and cached for the worker's lifetime (with a TTL)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from protego import Protego

from consumer.crawl.hostgate import HostGate
from consumer.fetch.fetcher import Fetcher
from shared.errors import BlockedAddress, FetchError, TooManyRedirects
from shared.ports import Clock

log = logging.getLogger(__name__)

MAX_ROBOTS_BYTES = 500 * 1024
#: RFC 9309 §2.3.1.2: "at least five consecutive redirects".
MAX_ROBOTS_REDIRECTS = 5
UNREACHABLE_TTL_S = 60.0
ROBOTS_TOKEN = "scrapeq"


class _AnyType:
    def __contains__(self, item: object) -> bool:
        return True


ANY_TYPE = _AnyType()


class RobotsSource(Protocol):
    """What the cache needs from a fetcher: the status and body of a URL."""

    async def fetch_robots(self, url: str) -> tuple[int, bytes]: ...


class FetcherRobots:
    """robots.txt through the guarded page fetcher, inside the host's gate: any type, 5 hops, first 500 KiB."""

    def __init__(self, fetcher: Fetcher, gate: HostGate) -> None:
        self.fetcher = fetcher
        self.gate = gate

    async def fetch_robots(self, url: str) -> tuple[int, bytes]:
        async with self.gate.slot(url):
            result = await self.fetcher.fetch(
                url, accept=ANY_TYPE, max_redirects=MAX_ROBOTS_REDIRECTS, truncate_at=MAX_ROBOTS_BYTES
            )
        return result.status_code, result.body


@dataclass(frozen=True)
class Rules:
    """The verdict source for one origin: parsed rules, or allow-all / disallow-all."""

    parser: Protego | None
    allow_all: bool
    expires_at: float
    #: robots.txt could not be read (5xx, network): everything is refused for now, not for good.
    unreachable: bool = False

    def allowed(self, url: str) -> bool:
        if self.parser is None:
            return self.allow_all
        return bool(self.parser.can_fetch(url, ROBOTS_TOKEN))

    def crawl_delay(self) -> float | None:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(ROBOTS_TOKEN)
        return float(delay) if delay is not None else None


def rules_from_response(status: int, body: bytes, *, now: float, ttl_s: float) -> Rules:
    """RFC 9309 §2.3.1: the pure decision from a robots.txt response.

    2xx → the rules (the first 500 KiB); 4xx → everything allowed; 5xx or unreachable → nothing allowed for
    now, cached only briefly so the host is tried again soon. Up to 5 redirects are followed (each hop guarded);
    more count as "unavailable" (everything allowed), as RFC 9309 §2.3.1.2 permits. A robots.txt the network
    guard refuses to fetch counts as unavailable too: each page then meets the guard on its own.
    """
    if 200 <= status < 300:
        text = body[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace")
        return Rules(Protego.parse(text), allow_all=True, expires_at=now + ttl_s)
    if 400 <= status < 500:
        return Rules(None, allow_all=True, expires_at=now + ttl_s)
    return Rules(None, allow_all=False, expires_at=now + UNREACHABLE_TTL_S, unreachable=True)


class RobotsCache:
    """Per-origin robots rules, fetched at most once at a time per origin."""

    def __init__(self, source: RobotsSource, *, ttl_s: float, clock: Clock, max_origins: int = 10_000) -> None:
        self.source = source
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_origins = max_origins
        self._rules: dict[str, Rules] = {}
        self._pending: dict[str, asyncio.Future[Rules]] = {}

    async def rules_for(self, url: str) -> Rules:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        cached = self._rules.get(origin)
        if cached is not None and cached.expires_at > self.clock():
            return cached
        pending = self._pending.get(origin)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Rules] = asyncio.get_running_loop().create_future()
        self._pending[origin] = future
        try:
            rules = await self._load(origin)
            future.set_result(rules)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._pending[origin]
        if len(self._rules) >= self.max_origins:
            self._rules.clear()
        self._rules[origin] = rules
        return rules

    async def allowed(self, url: str) -> bool:
        return (await self.rules_for(url)).allowed(url)

    async def _load(self, origin: str) -> Rules:
        try:
            status, body = await self.source.fetch_robots(origin + "/robots.txt")
        except TooManyRedirects:
            log.info("robots.txt of %s redirects too often: treated as unavailable", origin)
            return Rules(None, allow_all=True, expires_at=self.clock() + self.ttl_s)
        except BlockedAddress:
            # Not the site's answer but our refusal (its host or a hop is not public): no rules to obey, and
            # every page is refused or fetched by the same guard. Short-lived, as DNS may change.
            return Rules(None, allow_all=True, expires_at=self.clock() + UNREACHABLE_TTL_S)
        except FetchError as exc:
            log.info("robots.txt unreachable for %s (%s): disallowing for now", origin, exc.code)
            return Rules(None, allow_all=False, expires_at=self.clock() + UNREACHABLE_TTL_S, unreachable=True)
        return rules_from_response(status, body, now=self.clock(), ttl_s=self.ttl_s)

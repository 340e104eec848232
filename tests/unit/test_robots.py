"""robots.txt decisions per RFC 9309 and the per-origin cache."""

from __future__ import annotations

import asyncio

import pytest

from consumer.crawl.robots import MAX_ROBOTS_BYTES, UNREACHABLE_TTL_S, RobotsCache, rules_from_response
from shared.errors import BlockedAddress, ConnectFailed, TooManyRedirects

ROBOTS = b"User-agent: *\nDisallow: /private/\nAllow: /private/open/\nCrawl-delay: 2\n"


def test_a_2xx_robots_file_is_obeyed() -> None:
    rules = rules_from_response(200, ROBOTS, now=0, ttl_s=60)
    assert rules.allowed("http://s.test/docs/a")
    assert not rules.allowed("http://s.test/private/x")
    assert rules.allowed("http://s.test/private/open/y")
    assert rules.crawl_delay() == 2.0


def test_rules_for_our_own_user_agent_win() -> None:
    body = b"User-agent: *\nDisallow: /\n\nUser-agent: scrapeq\nAllow: /\n"
    assert rules_from_response(200, body, now=0, ttl_s=60).allowed("http://s.test/x")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 451])
def test_a_4xx_robots_file_allows_everything(status: int) -> None:
    rules = rules_from_response(status, b"User-agent: *\nDisallow: /", now=0, ttl_s=60)
    assert rules.allowed("http://s.test/anything")
    assert not rules.unreachable


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_robots_file_disallows_everything_for_a_short_while(status: int) -> None:
    rules = rules_from_response(status, b"", now=100, ttl_s=3600)
    assert not rules.allowed("http://s.test/")
    assert rules.unreachable
    assert rules.expires_at == 100 + UNREACHABLE_TTL_S


def test_only_the_first_500_kib_are_parsed() -> None:
    body = b"User-agent: *\n" + b"# padding\n" * (MAX_ROBOTS_BYTES // 10) + b"Disallow: /late/\n"
    assert rules_from_response(200, body, now=0, ttl_s=60).allowed("http://s.test/late/x")


class FakeSource:
    def __init__(self, answer: tuple[int, bytes] | Exception) -> None:
        self.answer = answer
        self.calls = 0

    async def fetch_robots(self, url: str) -> tuple[int, bytes]:
        self.calls += 1
        await asyncio.sleep(0.01)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_robots_is_fetched_once_per_origin_even_when_asked_concurrently() -> None:
    source = FakeSource((200, ROBOTS))
    cache = RobotsCache(source, ttl_s=60, clock=lambda: 0.0)
    verdicts = await asyncio.gather(*(cache.allowed(f"http://s.test/docs/{i}") for i in range(20)))
    assert all(verdicts)
    assert source.calls == 1
    assert not await cache.allowed("http://s.test/private/a")
    assert source.calls == 1


async def test_an_unreachable_host_disallows_everything() -> None:
    cache = RobotsCache(FakeSource(ConnectFailed("refused")), ttl_s=60, clock=lambda: 0.0)
    rules = await cache.rules_for("http://down.test/a")
    assert rules.unreachable and not rules.allowed("http://down.test/a")


@pytest.mark.parametrize(
    ("error", "ttl_s"),
    [(TooManyRedirects("more than 5 redirects"), 60.0), (BlockedAddress("10.0.0.1 is not public"), UNREACHABLE_TTL_S)],
)
async def test_too_many_redirects_or_a_guard_refusal_mean_unavailable(error: Exception, ttl_s: float) -> None:
    cache = RobotsCache(FakeSource(error), ttl_s=60, clock=lambda: 0.0)
    rules = await cache.rules_for("http://s.test/a")
    assert rules.allowed("http://s.test/a") and not rules.unreachable
    assert rules.expires_at == ttl_s


async def test_cached_rules_expire() -> None:
    now = [0.0]
    source = FakeSource((200, ROBOTS))
    cache = RobotsCache(source, ttl_s=10, clock=lambda: now[0])
    await cache.allowed("http://s.test/a")
    now[0] = 11
    await cache.allowed("http://s.test/a")
    assert source.calls == 2

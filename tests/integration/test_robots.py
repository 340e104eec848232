"""robots.txt per RFC 9309 against loopback servers: status classes, the 500 KiB limit, redirects, longest
match, and `Crawl-delay` measured at the server."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from consumer.crawl.hostgate import HostGate
from consumer.crawl.robots import MAX_ROBOTS_BYTES, UNREACHABLE_TTL_S, FetcherRobots, RobotsCache, Rules
from consumer.fetch.client import build_client
from consumer.fetch.fetcher import Fetcher
from consumer.handler import make_handler
from shared.backends.base import Backends
from shared.settings import Settings
from tests.conftest import make_settings
from tests.fixtures.canary import Canary
from tests.fixtures.httpserver import LoopbackServer, Route
from tests.integration.test_crawl import drain, finished, pages_of, start

TEXT = {"Content-Type": "text/plain"}
HTML = {"Content-Type": "text/html"}


def robots_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"fetch_read_timeout_s": 1.0, "fetch_total_timeout_s": 2.0}
    return make_settings(tmp_path, **(values | overrides))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def robots_cache(settings: Settings, clock: Clock | None = None) -> AsyncIterator[RobotsCache]:
    async with build_client(settings) as client:
        source = FetcherRobots(Fetcher(client, settings=settings), HostGate(max_concurrency=4))
        yield RobotsCache(source, ttl_s=3600, clock=clock or Clock())


async def rules_of(settings: Settings, url: str) -> Rules:
    async with robots_cache(settings) as cache:
        return await cache.rules_for(url)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 429])
async def test_a_4xx_robots_txt_allows_everything(tmp_path: Path, http_server: LoopbackServer, status: int) -> None:
    http_server.route("/robots.txt", status=status, headers=TEXT, body=b"User-agent: *\nDisallow: /\n")
    rules = await rules_of(robots_settings(tmp_path), http_server.url("/page"))
    assert rules.allowed(http_server.url("/page")) and not rules.unreachable


async def test_a_5xx_robots_txt_disallows_everything_until_the_short_cache_expires(
    tmp_path: Path, http_server: LoopbackServer
) -> None:
    http_server.script(
        "/robots.txt",
        Route(503, [("Content-Type", "text/plain")], b"try later"),
        Route(200, [("Content-Type", "text/plain")], b"User-agent: *\nDisallow: /private/\n"),
    )
    clock = Clock()
    async with robots_cache(robots_settings(tmp_path), clock) as cache:
        assert not await cache.allowed(http_server.url("/public"))
        clock.now += UNREACHABLE_TTL_S - 1
        assert not await cache.allowed(http_server.url("/public"))  # still the cached verdict
        assert len(http_server.hits_for("/robots.txt")) == 1
        clock.now += 2
        assert await cache.allowed(http_server.url("/public"))  # fetched again: now 200
        assert not await cache.allowed(http_server.url("/private/x"))
    assert len(http_server.hits_for("/robots.txt")) == 2


async def test_a_task_on_a_host_whose_robots_txt_fails_fetches_nothing_else(
    tmp_path: Path, http_server: LoopbackServer, backends: Backends
) -> None:
    http_server.route("/robots.txt", status=500, headers=TEXT, body=b"oops")
    http_server.route("/", headers=HTML, body=b"<a href='/a'>a</a>")
    settings = robots_settings(tmp_path)
    async with build_client(settings) as client:
        task = await start(backends, http_server.url("/"))
        await drain(backends, make_handler(settings, backends, client=client))
    done = await finished(backends, task)
    assert (done.status, done.error and done.error.code) == ("failed", "robots_unreachable")
    assert {hit.path for hit in http_server.hits} == {"/robots.txt"}


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    with Canary() as canary:
        port = canary.port
    yield port  # nothing listens there any more


@pytest.mark.parametrize("how", ["refused", "timeout"])
async def test_an_unreachable_robots_txt_disallows_everything(
    tmp_path: Path, http_server: LoopbackServer, how: str
) -> None:
    if how == "timeout":
        http_server.route("/robots.txt", headers=TEXT, body=b"User-agent: *\n", delay_s=5)
        url = http_server.url("/page")
    else:
        with closed_port() as port:
            url = f"http://127.0.0.1:{port}/page"
    rules = await rules_of(robots_settings(tmp_path, fetch_total_timeout_s=0.5), url)
    assert rules.unreachable and not rules.allowed(url)


async def test_only_the_first_500_kib_are_read_and_parsed(tmp_path: Path, http_server: LoopbackServer) -> None:
    head = b"User-agent: *\nDisallow: /early/\n"
    padding = b"# padding\n" * (MAX_ROBOTS_BYTES // 10)
    http_server.route("/robots.txt", headers=TEXT, body=head + padding + b"Disallow: /late/\n" + padding * 3)
    settings = robots_settings(tmp_path, fetch_max_body_bytes=64 * 1024)  # the page cap does not apply to it
    rules = await rules_of(settings, http_server.url("/"))
    assert not rules.allowed(http_server.url("/early/x"))
    assert rules.allowed(http_server.url("/late/x"))


async def test_an_endless_robots_txt_is_cut_at_500_kib_not_failed(tmp_path: Path, http_server: LoopbackServer) -> None:
    def endless() -> Iterator[bytes]:
        yield b"User-agent: *\nDisallow: /early/\n"
        yield from itertools.repeat(b"# more\n" * 1024)

    http_server.route("/robots.txt", headers=TEXT, body=endless)
    began = time.monotonic()
    rules = await rules_of(robots_settings(tmp_path), http_server.url("/"))
    assert not rules.unreachable and not rules.allowed(http_server.url("/early/x"))
    assert time.monotonic() - began < 1.0


@pytest.mark.parametrize(("hops", "followed"), [(5, True), (6, False)])
async def test_five_redirects_are_followed_and_six_mean_unavailable(
    tmp_path: Path, http_server: LoopbackServer, hops: int, followed: bool
) -> None:
    for n in range(hops):
        http_server.route("/robots.txt" if n == 0 else f"/r{n}", status=301, headers={"Location": f"/r{n + 1}"})
    http_server.route(f"/r{hops}", headers=TEXT, body=b"User-agent: *\nDisallow: /\n")
    rules = await rules_of(robots_settings(tmp_path), http_server.url("/page"))
    assert rules.allowed(http_server.url("/page")) is not followed  # six hops: "unavailable", allow all
    assert not rules.unreachable
    assert len(http_server.hits) == min(hops, 5) + 1


async def test_every_robots_redirect_hop_is_guarded(tmp_path: Path) -> None:
    with Canary() as canary, LoopbackServer(host="127.0.0.2", port=canary.port) as public:
        public.route("/robots.txt", status=302, headers={"Location": f"http://127.0.0.1:{canary.port}/robots.txt"})
        settings = robots_settings(tmp_path, allow_private_networks="127.0.0.2/32")
        rules = await rules_of(settings, public.url("/page"))
    assert canary.connections == 0
    # Refused by our guard, not answered by the site: no rules to obey; each page meets the guard itself.
    assert rules.allowed(public.url("/page")) and not rules.unreachable


async def test_allow_and_disallow_by_longest_match_in_a_crawl(
    tmp_path: Path, http_server: LoopbackServer, backends: Backends
) -> None:
    robots = b"User-agent: *\nDisallow: /\nAllow: /$\nAllow: /public/\nDisallow: /public/secret\n"
    robots += b"Allow: /tie\nDisallow: /tie\n"
    http_server.route("/robots.txt", headers=TEXT, body=robots)
    paths = ["/public/a", "/public/secret/b", "/private/c", "/tie", "/other"]
    http_server.route("/", headers=HTML, body=b"".join(b'<a href="%s">x</a>' % p.encode() for p in paths))
    for path in paths:
        http_server.route(path, headers=HTML, body=b"<p>page</p>")
    settings = robots_settings(tmp_path)
    async with build_client(settings) as client:
        task = await start(backends, http_server.url("/"), limit=10)
        await drain(backends, make_handler(settings, backends, client=client))
    fetched = {hit.path for hit in http_server.hits} - {"/robots.txt"}
    assert fetched == {"/", "/public/a", "/tie"}  # longest match wins; on a tie, Allow
    done = await finished(backends, task)
    assert (done.progress.pages_done, done.progress.pages_skipped) == (3, 3)
    stored = [page["url"] for page in await pages_of(backends, task)]
    assert stored == [http_server.url(path) for path in ("/", "/public/a", "/tie")]


@pytest.mark.parametrize(("crawl_delay", "cap_s", "expected_s"), [("0.25", 10.0, 0.25), ("30", 0.2, 0.2)])
async def test_crawl_delay_spaces_the_requests_to_the_host_up_to_the_cap(
    tmp_path: Path,
    http_server: LoopbackServer,
    backends: Backends,
    crawl_delay: str,
    cap_s: float,
    expected_s: float,
) -> None:
    http_server.route("/robots.txt", headers=TEXT, body=f"User-agent: *\nCrawl-delay: {crawl_delay}\n".encode())
    pages = [f"/p{n}" for n in range(4)]
    http_server.route("/", headers=HTML, body=b"".join(b'<a href="%s">x</a>' % p.encode() for p in pages))
    for path in pages:
        http_server.route(path, headers=HTML, body=b"<p>page</p>")
    settings = robots_settings(tmp_path, crawl_concurrency=8, host_max_delay_s=cap_s)
    began = time.monotonic()
    sent: list[float] = []

    async def note(request: httpx.Request) -> None:
        if request.url.path != "/robots.txt":
            sent.append(time.monotonic())

    async with build_client(settings) as client:
        client.event_hooks["request"].append(note)
        await start(backends, http_server.url("/"), limit=10)
        await drain(backends, make_handler(settings, backends, client=client))
    # The five pages and the sitemap lookup: the delay spaces every request to the host, not only pages.
    assert sorted(hit.path for hit in http_server.hits if hit.path != "/robots.txt") == ["/", *pages, "/sitemap.xml"]
    # Measured as the requests leave the client (after the gate): the server's arrival times add connection jitter.
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert len(sent) == 6
    assert min(gaps) >= expected_s - 0.01, gaps
    assert time.monotonic() - began < 6 * expected_s + 1.5  # and capped: 30 s asked, 0.2 s honoured

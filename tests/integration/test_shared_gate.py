"""Politeness across consumers: 50 slice runners, each with its own `SharedHostGate` (as 50 isolates or processes
have), sharing one coordination port, crawl one loopback host with a per-host limit of 2 and Crawl-delay 1 s. The
server sees at most 2 open requests and starts at least 1 s apart; a 429 one runner gets pauses them all."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from consumer.crawl.sharedgate import SharedHostGate
from consumer.fetch.client import build_client
from consumer.handler import make_handler
from shared.backends.factory import open_memory_backends, open_sqlite_backends
from shared.coordination import Coordinator
from shared.errors import StorageError
from shared.models import CrawlJob, ScrapeRequest, Task
from shared.stores.tasks import TaskStore
from tests.conftest import make_settings

RUNNERS = 50
LIMIT = 2
CRAWL_DELAY_S = 1.0
#: Requests last longer than the delay, so two really are open at once and a third would have to wait.
HOLD_S = 1.3
#: Loopback jitter between the grant and the request's arrival at the server.
JITTER_S = 0.02
pytestmark = pytest.mark.timeout(90)


class Site:
    """Records each request's arrival and end, and the most open at once; the first request to `/busy` gets 429."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.paths: list[str] = []
        self.open = 0
        self.most_open = 0
        self.refused_at: float | None = None

    async def page(self, request: web.Request) -> web.Response:
        self.starts.append(time.monotonic())
        self.paths.append(request.path)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            if request.path == "/busy" and self.refused_at is None:
                self.refused_at = time.monotonic()
                return web.Response(status=429, headers={"Retry-After": "2"})
            await asyncio.sleep(HOLD_S)
            if request.path == "/robots.txt":
                return web.Response(text=f"User-agent: *\nCrawl-delay: {CRAWL_DELAY_S:g}\n")
            links = "".join(f'<a href="{request.path}-{n}">more</a>' for n in range(3))
            return web.Response(text=f"<html><title>p</title><body>{links}</body></html>", content_type="text/html")
        finally:
            self.open -= 1


@pytest.fixture
async def site() -> AsyncIterator[tuple[Site, str]]:
    recorder = Site()
    app = web.Application()
    app.router.add_get("/{path:.*}", recorder.page)
    runner = web.AppRunner(app)
    await runner.setup()
    server = web.TCPSite(runner, "127.0.0.1", 0)
    await server.start()
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield recorder, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture(params=["sqlite", "memory"])
async def port(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Coordinator]:
    if request.param == "sqlite":
        backends = open_sqlite_backends(tmp_path / "scrapeq.sqlite3", visibility_timeout_s=30, max_retries=1)
    else:
        backends = open_memory_backends(visibility_timeout_s=30, max_retries=1)
    assert backends.coordination is not None
    yield backends.coordination
    await backends.aclose()


async def crawl(gate: SharedHostGate, client: httpx.AsyncClient, base: str, paths: list[str]) -> int:
    """What a slice does per page: the robots delay, the host's slot around the fetch, a pause after a 429."""
    fetched = 0
    for path in paths:
        url = base + path
        gate.crawl_delay(url, CRAWL_DELAY_S)
        async with gate.slot(url):
            response = await client.get(url)
        fetched += 1
        if response.status_code == 429:
            gate.pause(url, float(response.headers["retry-after"]))
    return fetched


def gates(port: Coordinator) -> list[SharedHostGate]:
    return [SharedHostGate(port, max_concurrency=LIMIT, lease_s=30) for _ in range(RUNNERS)]


async def test_50_runners_never_exceed_the_hosts_limit_or_its_crawl_delay(
    port: Coordinator, site: tuple[Site, str]
) -> None:
    recorder, base = site
    async with httpx.AsyncClient(timeout=30) as client:
        runners = [
            asyncio.create_task(crawl(gate, client, base, [f"/r{i}/a", f"/r{i}/b"]))
            for i, gate in enumerate(gates(port))
        ]
        await asyncio.sleep(9)  # about 9 starts' worth; every runner is waiting for its turn all along
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
    starts = recorder.starts
    assert len(starts) >= 8, starts  # the host was kept busy: one start per delay
    assert recorder.most_open == LIMIT  # two at once (each lasts longer than the delay), never three
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= CRAWL_DELAY_S - JITTER_S, gaps


async def test_a_429_to_one_runner_pauses_every_runner(port: Coordinator, site: tuple[Site, str]) -> None:
    recorder, base = site
    async with httpx.AsyncClient(timeout=30) as client:
        first = asyncio.create_task(crawl(SharedHostGate(port, max_concurrency=LIMIT), client, base, ["/busy"]))
        await first
        others = [asyncio.create_task(crawl(g, client, base, ["/after"])) for g in gates(port)[:5]]
        await asyncio.sleep(3.5)
        for runner in others:
            runner.cancel()
        await asyncio.gather(*others, return_exceptions=True)
    assert recorder.refused_at is not None
    later = [start - recorder.refused_at for start in recorder.starts[1:]]
    assert later and min(later) >= 2.0 - JITTER_S, later  # Retry-After: 2 held for the runners that never saw it


class Unreachable:
    """A port whose every call fails, as a Durable Object outage would."""

    async def acquire_host(self, *args: object, **kwargs: object) -> None:
        raise StorageError("coordination unavailable")

    async def release_host(self, *args: object, **kwargs: object) -> None:
        raise StorageError("coordination unavailable")


async def test_without_the_port_a_runner_slows_down_instead_of_failing(site: tuple[Site, str]) -> None:
    recorder, base = site
    gate = SharedHostGate(Unreachable(), max_concurrency=LIMIT)  # type: ignore[arg-type]
    async with httpx.AsyncClient(timeout=30) as client:
        began = time.monotonic()
        assert await crawl(gate, client, base, ["/x", "/y"]) == 2
    assert time.monotonic() - began >= 2 * CRAWL_DELAY_S  # it waited its delay before each request
    assert len(recorder.starts) == 2


async def test_50_consumers_keep_the_hosts_limit_and_its_robots_crawl_delay(
    site: tuple[Site, str], tmp_path: Path
) -> None:
    """The real consumer: 50 job handlers (each its own gate, robots.txt cache and fetcher, as 50 isolates or
    worker processes have) over one SQLite file, each running a task on the same host, whose robots.txt says
    `Crawl-delay: 1` (learned by each handler only after its own robots.txt fetch). With per-process gates the
    server sees 100 requests open at once."""
    recorder, base = site
    backends = open_sqlite_backends(tmp_path / "scrapeq.sqlite3", visibility_timeout_s=300, max_retries=1)
    settings = make_settings(tmp_path, host_gate="shared", host_max_concurrency=LIMIT, crawl_concurrency=2)
    store = TaskStore(backends.kv)
    for i in range(RUNNERS):
        request = ScrapeRequest(url=f"{base}/t{i}", knowledge_base_id="kb", limit=3)
        task = Task(task_id=f"{i:032x}", tenant_id="tn_polite", request=request)
        await store.create(task)
        await backends.jobs.send(CrawlJob(tenant_id="tn_polite", task_id=task.task_id).model_dump(mode="json"))
    messages = await backends.jobs.receive(max_messages=RUNNERS)
    assert len(messages) == RUNNERS
    async with build_client(settings) as client:
        handlers = [make_handler(settings, backends, client=client) for _ in messages]
        assert all(isinstance(h.crawls.visitor.gate, SharedHostGate) for h in handlers)
        runs = [
            asyncio.create_task(h.handle(m.body, message_id=m.id, attempts=m.attempts))
            for h, m in zip(handlers, messages, strict=True)
        ]
        await asyncio.sleep(9)
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
    await backends.aclose()
    assert len(recorder.starts) >= 8 and "/robots.txt" in recorder.paths
    assert any(path.startswith("/t") for path in recorder.paths)  # pages too, after their robots.txt
    assert recorder.most_open <= LIMIT
    gaps = [b - a for a, b in itertools.pairwise(recorder.starts)]
    assert min(gaps) >= CRAWL_DELAY_S - JITTER_S, list(zip(recorder.paths, gaps, strict=False))

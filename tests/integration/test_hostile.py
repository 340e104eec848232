"""Hostile pages: each path of the hostile site ends with its stable code within the page deadline, on both fetch
engines, one page at a time and all together in one crawl, and never fails the task.

Small caps here (1 MiB bodies, a 1 s deadline); the production caps meet the same site in
tests/e2e/test_hostile_rss.py, which also measures the worker's peak memory.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.crawl.hostgate import HostGate
from consumer.crawl.robots import FetcherRobots, RobotsCache
from consumer.crawl.visit import Outcome, Visit, Visitor
from consumer.fetch.client import build_client
from consumer.fetch.fetcher import Fetcher
from consumer.handler import make_handler
from shared.backends.base import Backends
from shared.models import ScrapeRequest
from shared.settings import Settings
from tests.conftest import make_settings
from tests.fixtures.hostile import CASES, HostileSite
from tests.integration.test_crawl import drain, finished, pages_of, start

ENGINES = ["aiohttp", "httpx"]
MiB = 1024 * 1024
DEADLINE_S = 1.0
#: Allowance over the deadline: extraction, and the site's threads competing for the GIL with the client.
SLACK_S = 0.75
REQUEST = ScrapeRequest(url="http://127.0.0.1/", knowledge_base_id="kb", formats=["markdown", "links", "text"])


def hostile_settings(tmp_path: Path, engine: str) -> Settings:
    return make_settings(
        tmp_path,
        fetch_engine=engine,
        fetch_connect_timeout_s=0.7,
        fetch_read_timeout_s=0.7,  # longer than the trickle's 0.5 s drip: only the page deadline stops it
        fetch_total_timeout_s=DEADLINE_S,
        fetch_max_body_bytes=MiB,
        fetch_max_redirects=10,
        fetch_max_links_per_page=500,
    )


@pytest.fixture(scope="module")
def site() -> Iterator[HostileSite]:
    with HostileSite() as running:
        yield running


async def visit_timed(visitor: Visitor, url: str) -> tuple[Visit, float]:
    began = time.monotonic()
    visit = await visitor.visit(url, 0, REQUEST)
    return visit, time.monotonic() - began


@pytest.mark.parametrize("engine", ENGINES)
async def test_each_hostile_page_ends_with_its_code_within_the_deadline(
    tmp_path: Path, site: HostileSite, engine: str
) -> None:
    settings = hostile_settings(tmp_path, engine)
    async with build_client(settings) as client:  # one client, as in a worker
        fetcher = Fetcher(client, settings=settings)
        gate = HostGate(max_concurrency=len(CASES))  # all at once: the battery costs one deadline, not one each
        robots = RobotsCache(FetcherRobots(fetcher, gate), ttl_s=60, clock=time.time)
        visitor = Visitor(fetcher=fetcher, robots=robots, gate=gate, max_links=settings.fetch_max_links_per_page)
        await robots.rules_for(site.url("/"))  # the site's robots.txt (a 404) is not part of a page's time
        results = await asyncio.gather(*(visit_timed(visitor, site.url(case.path)) for case in CASES))
    codes: dict[str, str | None] = {}
    for case, (visit, elapsed) in zip(CASES, results, strict=True):
        assert visit.page is not None
        codes[case.path] = visit.page.error.code if visit.page.error else None
        print(f"{engine:8} {case.path:16} {codes[case.path] or 'stored':26} {elapsed:5.2f} s")
        assert elapsed < DEADLINE_S + SLACK_S, (case.path, elapsed)
        if case.code is None:
            assert visit.outcome is Outcome.DONE
            json.loads(visit.page.model_dump_json())  # whatever the bytes were, the record is valid JSON
            assert visit.page.markdown is not None
    assert codes == {case.path: case.code for case in CASES}
    pages = {case.path: visit for case, (visit, _) in zip(CASES, results, strict=True)}
    assert len(pages["/many-links"].links) == settings.fetch_max_links_per_page
    assert pages["/long-links"].links == []
    for path in ("/invalid-utf8", "/bogus-charset"):
        page = pages[path].page
        assert page is not None and "\ufffd" in (page.text or "")


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_crawl_of_the_hostile_site_ends_every_page_with_its_code_and_completes(
    tmp_path: Path, site: HostileSite, backends: Backends, engine: str
) -> None:
    settings = hostile_settings(tmp_path, engine)
    async with build_client(settings) as client:
        handler = make_handler(settings, backends, client=client)
        task = await start(backends, site.url("/"), limit=len(CASES) + 1, max_depth=1)
        began = time.monotonic()
        await drain(backends, handler)
        elapsed = time.monotonic() - began
    pages = await pages_of(backends, task)
    codes = {str(page["url"]).removeprefix(site.url("")): page["error"] and page["error"]["code"] for page in pages}  # type: ignore[index]
    assert codes == {"/": None} | {case.path: case.code for case in CASES}
    done = await finished(backends, task)
    assert done.status == "completed"
    assert (done.progress.pages_done, done.progress.pages_failed) == (
        1 + sum(case.code is None for case in CASES),
        sum(case.code is not None for case in CASES),
    )
    # 4 at a time on this host: the three slow pages overlap, so the crawl takes about two deadlines
    assert elapsed < 3 * DEADLINE_S + 2 * SLACK_S, elapsed

"""`POST /scrape` with `urls` instead of `url`: exactly those pages (on any of their hosts), their links only
with `max_depth` > 0, one failing URL failing only its page; and the body's rules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from consumer.fetch.client import build_client
from consumer.handler import JobHandler, make_handler
from shared.backends.base import Backends
from shared.models import ScrapeRequest
from shared.settings import Settings
from tests.conftest import Caller, make_settings, new_caller
from tests.fixtures.versioned import Version, VersionedSite
from tests.integration.test_knowledge_base import KB, crawl, html, pages_by_path


@pytest.fixture
def site() -> Iterator[VersionedSite]:
    with VersionedSite() as served:
        served.pages = {f"/{n}.html": Version(html(str(n), f"page {n}", [f"/{n + 10}.html"])) for n in range(20)}
        yield served


@pytest.fixture
def crawl_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, slice_max_pages=2, crawl_concurrency=2)


@pytest.fixture
async def handler(crawl_settings: Settings, backends: Backends) -> AsyncIterator[JobHandler]:
    async with build_client(crawl_settings) as client:
        yield make_handler(crawl_settings, backends, client=client)


@pytest.fixture
async def carol(backends: Backends) -> Caller:
    return await new_caller(backends, "carol", [KB])


async def test_a_list_of_urls_scrapes_exactly_those_pages(
    site: VersionedSite, backends: Backends, handler: JobHandler, carol: Caller
) -> None:
    with VersionedSite() as other:  # another host (port): a list may span several
        other.pages = {"/x.html": Version(html("X", "elsewhere"))}
        wanted = [site.url("/1.html"), site.url("/2.html"), site.url("/missing.html"), other.url("/x.html")]
        task = await crawl(backends, handler, carol, "", urls=wanted)
        pages = await pages_by_path(backends, task, site)
    assert task.request.max_depth == 0  # the crawl helper sets limit 50: only the list bounds the crawl
    assert set(pages) == {"/1.html", "/2.html", "/missing.html", other.url("/x.html").removeprefix(site.url(""))}
    assert pages["/missing.html"]["error"]["code"] == "http_status"  # one URL's failure is that page's alone
    assert task.progress.pages_done == 3 and task.progress.pages_failed == 1


async def test_with_max_depth_their_links_are_followed_too(
    site: VersionedSite, backends: Backends, handler: JobHandler, carol: Caller
) -> None:
    urls = [site.url("/1.html"), site.url("/2.html")]
    task = await crawl(backends, handler, carol, "", urls=urls, max_depth=1, limit=10)
    assert set(await pages_by_path(backends, task, site)) == {"/1.html", "/2.html", "/11.html", "/12.html"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "give `url` or `urls`"),
        ({"url": "http://127.0.0.1:9/a", "urls": ["http://127.0.0.1:9/b"]}, "not both"),
        ({"urls": []}, "urls"),
        ({"urls": [f"http://127.0.0.1:9/{n}" for n in range(1001)]}, "urls"),
        ({"urls": ["ftp://127.0.0.1/x"]}, "urls"),
    ],
)
async def test_the_body_names_one_start_and_at_most_1000_urls(
    api: httpx.AsyncClient, carol: Caller, body: dict[str, object], field: str
) -> None:
    answer = await api.post("/scrape", json={"knowledge_base_id": KB, **body}, headers=carol.headers)
    assert answer.status_code == 422, answer.text
    assert field in answer.text


def test_a_stored_request_with_urls_reads_back_the_same() -> None:
    request = ScrapeRequest.model_validate(
        {"urls": ["http://127.0.0.1:9/a", "http://127.0.0.1:9/a#x"], "knowledge_base_id": KB}
    )
    assert request.urls == ["http://127.0.0.1:9/a"] and request.limit == 1
    assert ScrapeRequest.model_validate_json(request.model_dump_json()) == request

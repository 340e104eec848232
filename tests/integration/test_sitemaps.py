"""Sitemaps: a site whose pages only its sitemaps list (an index, a gzip child, one named in robots.txt) is
crawled to `limit`; `only` crawls exactly their URLs; hostile sitemaps (50 MB, a gzip bomb, a million URLs, an
index loop) are bounded and end as error codes in the task's report, never a failed task or worker."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from consumer.fetch.client import build_client
from consumer.handler import JobHandler, make_handler
from shared import keys
from shared.backends.base import Backends
from shared.models import CrawlJob, ScrapeRequest, Task, TaskStatus
from shared.ports import scan
from shared.settings import Settings
from shared.stores.erasure import Eraser
from shared.stores.tasks import TaskStore
from tests.conftest import make_settings
from tests.fixtures.httpserver import LoopbackServer
from tests.integration.test_crawl import drain

HTML = {"Content-Type": "text/html"}
XML = {"Content-Type": "application/xml"}
GZIP = {"Content-Type": "application/gzip"}
TEXT = {"Content-Type": "text/plain"}


def page(n: int) -> bytes:
    return f"<html><body><main><p>orphan page {n}</p></main></body></html>".encode()


def urlset(locs: list[str]) -> bytes:
    entries = "".join(f"<url><loc>{loc}</loc></url>" for loc in locs)
    return (
        f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'.encode()
    )


def index(locs: list[str]) -> bytes:
    entries = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<?xml version="1.0"?><sitemapindex>{entries}</sitemapindex>'.encode()


@pytest.fixture
def crawl_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, slice_max_pages=5, crawl_concurrency=4)


@pytest.fixture
async def handler(crawl_settings: Settings, backends: Backends) -> AsyncIterator[JobHandler]:
    async with build_client(crawl_settings) as client:
        yield make_handler(crawl_settings, backends, client=client)


async def crawl(backends: Backends, handler: JobHandler, url: str, **fields: object) -> Task:
    request = ScrapeRequest.model_validate({"url": url, "knowledge_base_id": "kb", **fields})
    task = Task(task_id=uuid.uuid4().hex, tenant_id="tn_s", request=request)
    await TaskStore(backends.kv).create(task)
    await backends.jobs.send(CrawlJob(tenant_id="tn_s", task_id=task.task_id).model_dump(mode="json"))
    await drain(backends, handler)
    done = await TaskStore(backends.kv).get("tn_s", task.task_id)
    assert done is not None
    return done


def orphan_site(server: LoopbackServer, pages: int) -> list[str]:
    """A start page linking nothing; its pages listed by an index (robots.txt names it) of a plain and a gzip child."""
    server.route("/", headers=HTML, body=b"<html><body><main><p>home, no links</p></main></body></html>")
    urls = [server.route(f"/orphan/{n}.html", headers=HTML, body=page(n)) for n in range(pages)]
    half = pages // 2
    server.route("/maps/a.xml", headers=XML, body=urlset(urls[:half]))
    server.route(
        "/maps/b.xml.gz", headers={"Content-Type": "application/gzip"}, body=gzip.compress(urlset(urls[half:]))
    )
    server.route("/maps/index.xml", headers=XML, body=index([server.url("/maps/a.xml"), server.url("/maps/b.xml.gz")]))
    server.route(
        "/robots.txt",
        headers={"Content-Type": "text/plain"},
        body=f"Sitemap: {server.url('/maps/index.xml')}\n".encode(),
    )
    return urls


async def test_pages_only_a_sitemap_lists_are_crawled_to_the_limit(
    http_server: LoopbackServer, backends: Backends, handler: JobHandler
) -> None:
    urls = orphan_site(http_server, 12)
    task = await crawl(backends, handler, http_server.url("/"), limit=10)  # `include` is the default
    assert task.status is TaskStatus.COMPLETED
    assert task.progress.pages_done == 10
    assert task.sitemap is not None and task.sitemap.files == 4 and task.sitemap.urls == 12
    assert [e.url for e in task.sitemap.errors] == []  # /sitemap.xml's 404 is no error: it is only the usual place
    raw, _ = await TaskStore(backends.kv).list_pages_json("tn_s", task.task_id, cursor=None, limit=100)
    assert len(raw) == 10 and urls[0] in raw[1]  # the start page first, then the sitemaps' URLs in order


async def test_only_crawls_exactly_the_sitemaps_urls(
    http_server: LoopbackServer, backends: Backends, handler: JobHandler
) -> None:
    orphan_site(http_server, 6)
    task = await crawl(backends, handler, http_server.url("/"), limit=50, sitemap="only")
    assert task.status is TaskStatus.COMPLETED and task.progress.pages_done == 6
    assert not http_server.hits_for("/")  # the start URL only names the site
    skipped = await crawl(backends, handler, http_server.url("/"), limit=50, sitemap="skip")
    assert skipped.progress.pages_done == 1 and skipped.sitemap is None


async def test_hostile_sitemaps_are_bounded_and_reported(
    http_server: LoopbackServer, backends: Backends, handler: JobHandler
) -> None:
    s = http_server
    s.route("/", headers=HTML, body=b"<html><body><main><p>home</p></main></body></html>")
    big = b"<urlset>" + b"<url><loc>http://127.0.0.1/x</loc></url>" * (50 * 1024 * 1024 // 40) + b"</urlset>"
    s.route("/big.xml", headers=XML, body=big)
    s.route(
        "/bomb.xml.gz",
        headers={"Content-Type": "application/gzip"},
        body=gzip.compress(b"\0" * (256 * 1024 * 1024), 9),
    )
    million = urlset([s.url(f"/m/{n}") for n in range(1_000_000)])
    s.route("/million.xml.gz", headers=GZIP, body=gzip.compress(million, 6))
    s.route("/broken.xml.gz", headers=GZIP, body=b"\x1f\x8b\x08\x00garbage")
    # The million last: its URLs fill the crawl's bound, and no sitemap is read after that.
    names = ["/big.xml", "/bomb.xml.gz", "/broken.xml.gz", "/million.xml.gz"]
    s.route(
        "/robots.txt",
        headers={"Content-Type": "text/plain"},
        body="".join(f"Sitemap: {s.url(n)}\n" for n in names).encode(),
    )
    task = await crawl(backends, handler, s.url("/"), limit=5, sitemap="include")
    assert task.status is TaskStatus.COMPLETED
    assert task.sitemap is not None
    codes = {e.url.removeprefix(s.url("")): e.code for e in task.sitemap.errors}
    assert codes == {
        "/big.xml": "too_large",  # over the fetch's body cap: refused while reading
        "/bomb.xml.gz": "sitemap_too_large",  # 256 MB of zeros in 250 KB: inflated no further than 50 MB
        "/broken.xml.gz": "sitemap_corrupt",
        "/million.xml.gz": "sitemap_too_large",  # read as far as 50 MB, and its URLs up to the bound kept
    }
    # A million URLs: taken up to the crawl's own bound (limit × frontier factor), the rest never held.
    assert task.sitemap.urls == 5 * 20 + 100 - 1
    assert task.progress.pages_done == 1  # the start page; the million's URLs answer 404 here


async def test_an_index_loop_reads_each_sitemap_once(backends: Backends, handler: JobHandler) -> None:
    with LoopbackServer() as s:
        s.route("/", headers=HTML, body=b"<html><body><main><p>home</p></main></body></html>")
        s.route("/loop.xml", headers=XML, body=index([s.url("/loop.xml"), s.url("/loop2.xml")]))
        s.route("/loop2.xml", headers=XML, body=index([s.url("/loop.xml"), s.url("/deep.xml")]))
        s.route("/deep.xml", headers=XML, body=index([s.url("/deeper.xml")]))
        s.route("/deeper.xml", headers=XML, body=urlset([s.url("/")]))
        s.route("/robots.txt", headers=TEXT, body=f"Sitemap: {s.url('/loop.xml')}\n".encode())
        task = await crawl(backends, handler, s.url("/"), limit=5, sitemap="include")
        # Each sitemap once; indexes nest three deep at most: the fourth level is refused.
        paths = ("/loop.xml", "/loop2.xml", "/deep.xml", "/deeper.xml")
        assert [len(s.hits_for(p)) for p in paths] == [1, 1, 1, 0]
    assert task.status is TaskStatus.COMPLETED and task.sitemap is not None
    assert [(e.url.rsplit("/", 1)[1], e.code) for e in task.sitemap.errors] == [("deeper.xml", "sitemap_nesting")]


async def test_within_max_age_the_kept_discovery_is_reused_with_no_sitemap_request(
    http_server: LoopbackServer, backends: Backends, handler: JobHandler
) -> None:
    orphan_site(http_server, 6)
    first = await crawl(backends, handler, http_server.url("/"), limit=10)
    assert first.sitemap is not None and not first.sitemap.cached and first.progress.pages_done == 7
    http_server.hits.clear()
    again = await crawl(backends, handler, http_server.url("/"), limit=10, max_age=3600)
    assert http_server.hits == []  # no sitemap, no page: everything younger than max_age
    assert again.sitemap is not None and again.sitemap.cached and again.sitemap.urls == 6
    assert again.progress.pages_done == 7 and again.changes.unchanged == 7
    # Another kind of request (a different scope) finds its own URLs: the kept discovery is not its answer.
    narrower = await crawl(backends, handler, http_server.url("/"), limit=10, max_age=3600, include_paths=["^/$"])
    assert narrower.sitemap is not None and not narrower.sitemap.cached and narrower.sitemap.urls == 0
    assert len(http_server.hits_for("/maps/index.xml")) == 1
    # Without max_age (the default 0) the sitemaps are read again.
    await crawl(backends, handler, http_server.url("/"), limit=10)
    assert len(http_server.hits_for("/maps/index.xml")) == 2


async def test_a_one_page_scrape_makes_no_sitemap_request(
    http_server: LoopbackServer, backends: Backends, handler: JobHandler
) -> None:
    orphan_site(http_server, 3)
    task = await crawl(backends, handler, http_server.url("/"))  # limit 1: no room for a sitemap's URL
    assert task.progress.pages_done == 1 and task.sitemap is None
    listed = await crawl(backends, handler, http_server.url("/"), limit=5, max_depth=0)  # depth 0: no room either
    assert listed.progress.pages_done == 1 and listed.sitemap is None
    assert {hit.path for hit in http_server.hits} == {"/robots.txt", "/"}


async def test_erasing_the_knowledge_base_forgets_its_kept_discoveries(
    http_server: LoopbackServer, backends: Backends, handler: JobHandler
) -> None:
    orphan_site(http_server, 3)
    await crawl(backends, handler, http_server.url("/"), limit=10)
    prefix = keys.sitemap_discoveries_prefix("tn_s", "kb")
    assert [info.name async for info in scan(backends.kv, prefix)] != []
    await Eraser(backends.kv).erase_knowledge_base("tn_s", "kb")
    assert [info.name async for info in scan(backends.kv, prefix)] == []
    # Erasing one document forgets them too: they list its URL.
    await crawl(backends, handler, http_server.url("/"), limit=10)
    await Eraser(backends.kv).erase_document("tn_s", "kb", http_server.url("/orphan/0.html"))
    assert [info.name async for info in scan(backends.kv, prefix)] == []

"""A knowledge base kept in sync across crawls: a site changes between two crawls (pages edited, added, deleted;
some with ETag, some with Last-Modified, some with neither) and the second crawl reports exactly what changed,
asks conditionally (304s reuse the stored content), and the documents list each URL once at its latest."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumer.crawl.slice import CrawlSlice, initial_state
from consumer.fetch.client import build_client
from consumer.handler import JobHandler, make_handler
from shared.backends.base import Backends
from shared.models import CrawlJob, ScrapeRequest, Task, TaskStatus, utcnow
from shared.settings import Settings
from shared.stores.accounts import Accounts
from shared.stores.tasks import TaskStore
from tests.conftest import Caller, make_settings, new_caller
from tests.fixtures.versioned import Version, VersionedSite
from tests.integration.test_crawl import drain

KB = "kb_sync"
OLD_DATE = "Mon, 07 Dec 2026 08:00:00 GMT"
NEW_DATE = "Mon, 07 Dec 2026 09:00:00 GMT"


def html(title: str, body: str, links: tuple[str, ...] | list[str] = ()) -> str:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    head = f"<html><head><title>{title}</title></head>"
    return f"{head}<body><main><h1>{title}</h1><p>{body}</p>{anchors}</main></body></html>"


@pytest.fixture
def site() -> Iterator[VersionedSite]:
    with VersionedSite() as served:
        yield served


@pytest.fixture
def crawl_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, slice_max_pages=3, crawl_concurrency=2)  # several slices per crawl


@pytest.fixture
async def handler(crawl_settings: Settings, backends: Backends) -> AsyncIterator[JobHandler]:
    async with build_client(crawl_settings) as client:
        yield make_handler(crawl_settings, backends, client=client)


@pytest.fixture
async def carol(backends: Backends) -> Caller:
    return await new_caller(backends, "carol", [KB, "kb_other"])


async def crawl(
    backends: Backends, handler: JobHandler, caller: Caller, url: str, kb: str = KB, **fields: object
) -> Task:
    request = ScrapeRequest.model_validate({"url": url, "knowledge_base_id": kb, "limit": 50, **fields})
    task = Task(task_id=uuid.uuid4().hex, tenant_id=caller.tenant.tenant_id, request=request)
    tasks = TaskStore(backends.kv)
    await tasks.create(task)
    await backends.jobs.send(CrawlJob(tenant_id=task.tenant_id, task_id=task.task_id).model_dump(mode="json"))
    await drain(backends, handler)
    done = await tasks.get(task.tenant_id, task.task_id)
    assert done is not None and done.status is TaskStatus.COMPLETED, done
    return done


async def pages_by_path(backends: Backends, task: Task, site: VersionedSite) -> dict[str, dict[str, Any]]:
    raw, _ = await TaskStore(backends.kv).list_pages_json(task.tenant_id, task.task_id, cursor=None, limit=1000)
    return {json.loads(r)["url"].removeprefix(site.url("")): json.loads(r) for r in raw}


def by_change(pages: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    sets: dict[str, set[str]] = {"new": set(), "changed": set(), "unchanged": set(), "removed": set()}
    for path, page in pages.items():
        if page["change"] is not None:
            sets[page["change"]].add(path)
    return sets


async def test_a_second_crawl_reports_exactly_what_changed_and_asks_conditionally(
    site: VersionedSite, backends: Backends, handler: JobHandler, carol: Caller, api: httpx.AsyncClient
) -> None:
    children = ["/etag.html", "/dated.html", "/plain.html", "/gone.html", "/edited.html"]
    site.pages = {
        "/index.html": Version(html("Home", "welcome", children)),
        "/etag.html": Version(html("Tagged", "stable text"), etag='"v1"'),
        "/dated.html": Version(html("Dated", "first text"), last_modified=OLD_DATE),
        "/plain.html": Version(html("Plain", "never changes")),
        "/gone.html": Version(html("Gone", "soon deleted"), etag='"g1"'),
        "/edited.html": Version(html("Edited", "first draft")),
    }
    first = await crawl(backends, handler, carol, site.url("/index.html"))
    assert by_change(await pages_by_path(backends, first, site))["new"] == set(site.pages)
    assert first.changes.model_dump() == {"new": 6, "changed": 0, "unchanged": 0, "removed": 0}
    assert sum(site.not_modified.values()) == 0

    site.pages.update(
        {
            "/index.html": Version(html("Home", "welcome", [*children, "/added.html"])),
            "/dated.html": Version(html("Dated", "second text"), last_modified=NEW_DATE),
            "/edited.html": Version(html("Edited", "second draft")),
            "/added.html": Version(html("Added", "brand new")),
        }
    )
    del site.pages["/gone.html"]
    site.reset_counts()
    between = utcnow().isoformat()
    second = await crawl(backends, handler, carol, site.url("/index.html"))

    pages = await pages_by_path(backends, second, site)
    assert by_change(pages) == {
        "new": {"/added.html"},
        "changed": {"/index.html", "/dated.html", "/edited.html"},
        "unchanged": {"/etag.html", "/plain.html"},
        "removed": {"/gone.html"},
    }
    assert second.changes.model_dump() == {"new": 1, "changed": 3, "unchanged": 2, "removed": 1}
    # Conditional requests from the stored validators: a 304 for the tagged page (no body sent), full bodies
    # where the page changed or had no validators.
    assert site.conditional == {"/etag.html": 1, "/dated.html": 1, "/gone.html": 1}
    assert dict(site.not_modified) == {"/etag.html": 1}
    assert site.full["/etag.html"] == 0 and site.full["/dated.html"] == 1 and site.full["/plain.html"] == 1
    # A 304 page carries the stored content.
    assert pages["/etag.html"]["markdown"] == (await pages_by_path(backends, first, site))["/etag.html"]["markdown"]
    assert "stable text" in pages["/etag.html"]["markdown"]

    # The documents: each URL once, at its latest version, all from the second crawl.
    answer = await api.get(f"/knowledge-bases/{KB}/documents", params={"limit": 3}, headers=carol.headers)
    documents: list[dict[str, Any]] = []
    while True:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        documents += body["documents"]
        if body["next_cursor"] is None:
            break
        params = {"limit": 3, "cursor": body["next_cursor"]}
        answer = await api.get(f"/knowledge-bases/{KB}/documents", params=params, headers=carol.headers)
    by_path = {d["url"].removeprefix(site.url("")): d for d in documents}
    assert len(documents) == len(by_path) == 7
    assert {d["task_id"] for d in documents} == {second.task_id}
    assert "second text" in by_path["/dated.html"]["markdown"]
    assert by_path["/gone.html"]["change"] == "removed"
    assert by_path["/etag.html"]["change"] == "unchanged"
    assert by_path["/etag.html"]["changed_at"] == by_path["/etag.html"]["first_seen_at"]
    assert by_path["/dated.html"]["changed_at"] > by_path["/dated.html"]["first_seen_at"]

    one = await api.get(
        f"/knowledge-bases/{KB}/documents", params={"url": site.url("/edited.html")}, headers=carol.headers
    )
    assert [d["url"] for d in one.json()["documents"]] == [site.url("/edited.html")]
    changed = await api.get(
        f"/knowledge-bases/{KB}/documents", params={"changed_since": between}, headers=carol.headers
    )
    assert {d["url"].removeprefix(site.url("")) for d in changed.json()["documents"]} == {
        "/index.html",
        "/dated.html",
        "/edited.html",
        "/added.html",
        "/gone.html",
    }

    export = await api.get(f"/knowledge-bases/{KB}/export", headers=carol.headers)
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    exported = [json.loads(line) for line in export.text.splitlines()]
    assert sorted(exported, key=lambda d: d["url"]) == sorted(documents, key=lambda d: d["url"])

    listed = await api.get("/knowledge-bases", headers=carol.headers)
    assert listed.status_code == 200
    summaries = {kb["knowledge_base_id"]: kb for kb in listed.json()["knowledge_bases"]}
    assert summaries[KB]["documents"] == 7
    assert summaries[KB]["bytes"] > 0
    assert summaries[KB]["last_crawled_at"] is not None
    assert summaries["kb_other"] == {
        "knowledge_base_id": "kb_other",
        "documents": 0,
        "bytes": 0,
        "last_crawled_at": None,
    }


async def test_knowledge_bases_are_apart_and_keys_see_only_their_own(
    site: VersionedSite, backends: Backends, handler: JobHandler, carol: Caller, api: httpx.AsyncClient
) -> None:
    site.pages = {"/index.html": Version(html("Home", "hello"))}
    await crawl(backends, handler, carol, site.url("/index.html"))
    other = await crawl(backends, handler, carol, site.url("/index.html"), kb="kb_other")
    # The same URL in another knowledge base is new there.
    assert other.changes.new == 1
    mallory = await new_caller(backends, "mallory", [KB])  # same kb name, another tenant
    theirs = await api.get(f"/knowledge-bases/{KB}/documents", headers=mallory.headers)
    assert theirs.status_code == 200
    assert theirs.json()["documents"] == []
    narrow = await new_caller(backends, "narrow", [KB, "kb_x"], key_kbs=["kb_x"])
    refused = await api.get(f"/knowledge-bases/{KB}/documents", headers=narrow.headers)
    assert refused.status_code == 403
    assert [
        kb["knowledge_base_id"]
        for kb in (await api.get("/knowledge-bases", headers=narrow.headers)).json()["knowledge_bases"]
    ] == ["kb_x"]
    assert (
        await api.get(f"/knowledge-bases/{KB}/documents", params={"url": "ftp://x"}, headers=carol.headers)
    ).status_code == 422


async def test_a_slice_run_again_reports_the_same_changes(
    site: VersionedSite, backends: Backends, handler: JobHandler, carol: Caller, crawl_settings: Settings
) -> None:
    """A redelivered slice (its first run died before its checkpoint) compares against the version before its
    task, not against what its first run wrote."""
    site.pages = {
        "/index.html": Version(html("Home", "v1", ["/a.html", "/b.html"])),
        "/a.html": Version(html("A", "same"), etag='"a"'),
        "/b.html": Version(html("B", "old")),
    }
    await crawl(backends, handler, carol, site.url("/index.html"))
    site.pages["/b.html"] = Version(html("B", "new"))
    request = ScrapeRequest.model_validate({"url": site.url("/index.html"), "knowledge_base_id": KB, "limit": 10})
    task = Task(task_id=uuid.uuid4().hex, tenant_id=carol.tenant.tenant_id, request=request)
    await TaskStore(backends.kv).create(task)
    crawler = handler.crawls

    async def never() -> bool:
        return False

    def run_slice() -> CrawlSlice:
        return CrawlSlice(
            task,
            initial_state(task),
            visitor=crawler.visitor,
            store=crawler.store,
            settings=crawl_settings.model_copy(update={"slice_max_pages": 100}),
            clock=crawler.clock,
            cancel_requested=never,
        )

    first, again = await run_slice().run(), await run_slice().run()
    expected = {"new": 0, "changed": 1, "unchanged": 2, "removed": 0}
    assert first.state.changes.model_dump() == again.state.changes.model_dump() == expected
    pages = await pages_by_path(backends, task, site)
    assert {path: page["change"] for path, page in pages.items()} == {
        "/index.html": "unchanged",
        "/a.html": "unchanged",
        "/b.html": "changed",
    }


async def test_max_age_serves_fresh_documents_from_the_store_with_no_request(
    site: VersionedSite, backends: Backends, handler: JobHandler, carol: Caller
) -> None:
    site.pages = {
        "/index.html": Version(html("Home", "v1", ["/a.html", "/b.html"])),
        "/a.html": Version(html("A", "a"), etag='"a"'),
        "/b.html": Version(html("B", "b")),
    }
    first = await crawl(backends, handler, carol, site.url("/index.html"))
    site.reset_counts()
    cached = await crawl(backends, handler, carol, site.url("/index.html"), max_age=3600)
    assert sum(site.requests.values()) == 0
    pages = await pages_by_path(backends, cached, site)
    assert {page["cached"] for page in pages.values()} == {True}
    assert cached.changes.model_dump() == {"new": 0, "changed": 0, "unchanged": 3, "removed": 0}
    before = await pages_by_path(backends, first, site)
    assert {p: page["markdown"] for p, page in pages.items()} == {p: page["markdown"] for p, page in before.items()}
    # max_age counts from the real fetch: once it has passed, the pages are requested again.
    await asyncio.sleep(1.1)
    again = await crawl(backends, handler, carol, site.url("/index.html"), max_age=1)
    assert site.requests["/index.html"] == 1 and site.not_modified["/a.html"] == 1
    assert {page["cached"] for page in (await pages_by_path(backends, again, site)).values()} == {False}


async def test_erasing_a_knowledge_base_leaves_nothing_of_it_readable(
    site: VersionedSite, backends: Backends, handler: JobHandler, carol: Caller, api: httpx.AsyncClient
) -> None:
    site.pages = {
        "/index.html": Version(html("Home", "private words", ["/a.html"])),
        "/a.html": Version(html("A", "more private words")),
    }
    body = {"url": site.url("/index.html"), "knowledge_base_id": KB, "limit": 10, "webhook": None}
    submitted = await api.post("/scrape", json=body, headers={**carol.headers, "Idempotency-Key": "once"})
    assert submitted.status_code == 202
    await drain(backends, handler)
    erased_task = submitted.json()["task_id"]
    kept = await crawl(backends, handler, carol, site.url("/index.html"), kb="kb_other")

    answer = await api.delete(f"/knowledge-bases/{KB}", headers=carol.headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"keys": 0} == {
        "knowledge_base_id": KB,
        "url": None,
        "tasks": 1,
        "pages": 2,
        "documents": 2,
        "events": 2,  # started, completed
        "idempotency_keys": 1,
        "keys": 0,
    }
    h = carol.headers
    assert (await api.get(f"/tasks/{erased_task}", headers=h)).status_code == 404
    assert (await api.get(f"/tasks/{erased_task}/pages", headers=h)).status_code == 404
    assert (await api.get(f"/tasks/{erased_task}/events", headers=h)).status_code == 404
    assert (await api.get("/tasks", params={"knowledge_base_id": KB}, headers=h)).json()["tasks"] == []
    assert [t["task_id"] for t in (await api.get("/tasks", headers=h)).json()["tasks"]] == [kept.task_id]
    assert (await api.get(f"/knowledge-bases/{KB}/documents", headers=h)).json()["documents"] == []
    assert (await api.get(f"/knowledge-bases/{KB}/export", headers=h)).text == ""
    feed = (await api.get("/events", headers=h)).json()["events"]
    assert feed and {e["data"]["task_id"] for e in feed} == {kept.task_id}
    summaries = {
        kb["knowledge_base_id"]: kb for kb in (await api.get("/knowledge-bases", headers=h)).json()["knowledge_bases"]
    }
    assert summaries[KB]["documents"] == 0 and summaries["kb_other"]["documents"] == 2
    # Nothing of the erased knowledge base is left in the store at all.
    listing = await backends.kv.list(prefix=f"tenant:{carol.tenant.tenant_id}:")
    leftovers = [info.name for info in listing.keys if erased_task in info.name or f":kb:{KB}:" in info.name]
    assert leftovers == []
    # The Idempotency-Key that pointed at the erased task makes a new one.
    again = await api.post("/scrape", json=body, headers={**carol.headers, "Idempotency-Key": "once"})
    assert again.status_code == 202 and again.json()["task_id"] != erased_task
    audit = await Accounts(backends.kv).audit_log(carol.tenant.tenant_id)
    [entry] = [e for e in audit if e.action == "knowledge_base.erased"]
    assert entry.key_id == carol.key_id
    assert entry.detail["pages"] == 2 and entry.detail["knowledge_base_id"] == KB


async def test_erasing_a_document_removes_every_stored_version_of_its_url(
    site: VersionedSite, backends: Backends, handler: JobHandler, carol: Caller, api: httpx.AsyncClient
) -> None:
    site.pages = {
        "/index.html": Version(html("Home", "hello", ["/a.html", "/b.html"])),
        "/a.html": Version(html("A", "erase me")),
        "/b.html": Version(html("B", "keep me")),
    }
    first = await crawl(backends, handler, carol, site.url("/index.html"))
    second = await crawl(backends, handler, carol, site.url("/index.html"))
    answer = await api.delete(
        f"/knowledge-bases/{KB}/documents", params={"url": site.url("/a.html")}, headers=carol.headers
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["documents"], answer.json()["pages"], answer.json()["tasks"]) == (1, 2, 2)
    for task in (first, second):
        assert set(await pages_by_path(backends, task, site)) == {"/index.html", "/b.html"}
    docs = (await api.get(f"/knowledge-bases/{KB}/documents", headers=carol.headers)).json()["documents"]
    assert sorted(d["url"] for d in docs) == [site.url("/b.html"), site.url("/index.html")]
    again = await api.delete(
        f"/knowledge-bases/{KB}/documents", params={"url": site.url("/a.html")}, headers=carol.headers
    )
    assert again.json()["pages"] == 0  # idempotent


async def test_a_stored_version_stands_in_only_for_a_crawl_it_can_serve(
    site: VersionedSite, backends: Backends, handler: JobHandler, carol: Caller
) -> None:
    site.pages = {
        "/index.html": Version(html("Home", "hi", ["/a.html"]), etag='"i"'),
        "/a.html": Version(html("A", "a"), etag='"a"'),
    }
    # Stored without links or HTML: a crawl that follows links, or wants HTML, fetches whole.
    await crawl(backends, handler, carol, site.url("/index.html"), formats=["markdown"], max_depth=0)
    site.reset_counts()
    wider = await crawl(backends, handler, carol, site.url("/index.html"), formats=["markdown", "html", "links"])
    assert site.conditional == {} and site.full["/index.html"] == 1
    pages = await pages_by_path(backends, wider, site)
    assert set(pages) == {"/index.html", "/a.html"}
    assert pages["/index.html"]["html"] and pages["/index.html"]["change"] == "unchanged"
    # Stored with more than asked: reused (a 304), with only the formats asked for.
    site.reset_counts()
    narrow = await crawl(backends, handler, carol, site.url("/index.html"), formats=["markdown", "links"])
    assert dict(site.not_modified) == {"/index.html": 1, "/a.html": 1}
    pages = await pages_by_path(backends, narrow, site)
    assert pages["/index.html"]["html"] is None and pages["/index.html"]["markdown"]
    assert set(pages) == {"/index.html", "/a.html"}
    # Another extraction (the whole page, not its main content) is not reused either.
    site.reset_counts()
    await crawl(
        backends, handler, carol, site.url("/index.html"), formats=["markdown", "links"], only_main_content=False
    )
    assert site.not_modified == {}

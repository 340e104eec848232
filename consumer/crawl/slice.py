"""One bounded slice of a breadth-first crawl: at most N pages or T seconds, then a checkpoint."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from consumer.crawl import versions
from consumer.crawl.scope import Scope
from consumer.crawl.sitemaps import discovery_digest
from consumer.crawl.visit import Outcome, Visit, Visitor
from shared import telemetry
from shared.errors import StorageError
from shared.models import Change, CrawlState, DocumentVersion, FrontierEntry, Page, PageError, Progress, Task
from shared.ports import Clock
from shared.settings import Settings
from shared.stores.documents import Discovery, DocumentStore
from shared.stores.tasks import TaskStore
from shared.urls import url_key

log = logging.getLogger(__name__)

#: Completed-but-uncommitted pages allowed behind a slow page, as a multiple of the concurrency.
WINDOW_FACTOR = 4
#: Answers that say the knowledge base's document is gone.
GONE_STATUS = frozenset({404, 410})

PageHook = Callable[[int, Page, Progress], Awaitable[None]]
"""Called after a page is stored, with its sequence number and the progress so far (for page events)."""
ProgressHook = Callable[[Progress], Awaitable[None]]  # the progress so far, at most every `progress_interval_s`


class Shutdown:
    """The process is stopping: slices start no page, and hand back what is unfinished when the grace is up."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self._deadline = float("inf")

    def begin(self, grace_s: float) -> None:
        if not self.requested.is_set():
            self._deadline = time.monotonic() + grace_s
            self.requested.set()

    def remaining_s(self) -> float:
        return max(0.0, self._deadline - time.monotonic())


@dataclass(frozen=True)
class SliceResult:
    state: CrawlState
    #: Nothing left to do: limit reached, frontier empty, or too many failures.
    finished: bool
    cancelled: bool = False
    #: The start URL itself failed or was refused: the task could not run.
    start_failure: Visit | None = None
    #: Stopped early by a shutdown: pages not committed are back on the frontier for the next slice.
    handed_back: bool = False


class CrawlSlice:
    """Runs one slice of one task's crawl from its checkpoint.

    Pages are fetched concurrently but committed in frontier order, so that a redelivered slice rediscovers
    the same URLs in the same order and stores each page under the same `page:{seq}` key: a page is stored once
    per task however often the slice runs.
    """

    def __init__(
        self,
        task: Task,
        state: CrawlState,
        *,
        visitor: Visitor,
        store: TaskStore,
        settings: Settings,
        clock: Clock,
        cancel_requested: Callable[[], Awaitable[bool]],
        on_page: PageHook | None = None,
        on_progress: ProgressHook | None = None,
        start_budget_s: float | None = None,
        shutdown: Shutdown | None = None,
    ) -> None:
        self.task = task
        self.request = task.request
        self.scope = Scope.from_request(task.request)
        self.visitor = visitor
        self.store = store
        self.settings = settings
        self.clock = clock
        self.cancel_requested = cancel_requested
        self.on_page = on_page
        self.on_progress = on_progress
        self._progress_sent_at = float("-inf")
        #: What is left of the start page's budget when an earlier delivery already tried it.
        self.start_budget_s = start_budget_s
        self.shutdown = shutdown
        self.frontier = deque(state.frontier)
        self.seen = set(state.seen)
        self.next_seq = state.next_seq
        self.progress = state.progress.model_copy()
        self.changes = state.changes.model_copy()
        self.sitemap = state.sitemap
        self.documents = DocumentStore(store.kv)
        #: Per launched page: the knowledge base's version it is compared with (None: a URL it does not hold).
        self.bases: dict[int, DocumentVersion | None] = {}
        self.slice_no = state.next_slice
        self.window: dict[int, asyncio.Task[Visit]] = {}
        self.entries: dict[int, FrontierEntry] = {}
        self.commit_seq = state.next_seq
        self.max_seen = task.request.limit * settings.frontier_max_factor + 100
        self._cancel_checked_at = float("-inf")
        self.deadline = float("inf")

    async def run(self) -> SliceResult:
        deadline = self.deadline = self.clock() + self.settings.slice_max_s
        launched = 0
        cancelled = handed_back = False
        shutdown = self.shutdown
        waker = None if shutdown is None else asyncio.ensure_future(shutdown.requested.wait())
        if self.sitemap is None and self._looks_for_sitemaps() and self.next_seq == 0:
            await self._add_sitemap_urls()
        try:
            while True:
                if not cancelled and await self._cancelled():
                    # Pages in flight or waiting for their host are abandoned (cancelled below): a cancelled or
                    # erased task makes no request more than those already on the wire.
                    cancelled = True
                    break
                stopping = shutdown is not None and shutdown.requested.is_set()
                while not cancelled and not stopping and self._may_launch(launched, deadline):
                    self._launch()
                    launched += 1
                if not self.window:
                    break
                if shutdown is not None and stopping and shutdown.remaining_s() <= 0:
                    self._hand_back()
                    handed_back = True
                    break
                failure = await self._commit_ready(waker)
                if failure is not None:
                    return SliceResult(self._state(), finished=True, start_failure=failure)
                await self._publish_progress()
        finally:
            for pending in self.window.values():
                pending.cancel()
            if waker is not None:
                waker.cancel()
        finished = cancelled or self._exhausted()
        return SliceResult(self._state(), finished=finished, cancelled=cancelled, handed_back=handed_back)

    def _may_launch(self, launched: int, deadline: float) -> bool:
        in_flight = sum(1 for t in self.window.values() if not t.done())
        return (
            bool(self.frontier)
            and in_flight < self.settings.crawl_concurrency
            and len(self.window) < self.settings.crawl_concurrency * WINDOW_FACTOR
            # Never more in flight than could still be needed if every page succeeds: exactly `limit` pages.
            and self.progress.pages_done + len(self.window) < self.request.limit
            and self.progress.pages_failed < self.request.limit
            and launched < self.settings.slice_max_pages
            and self.clock() < deadline
            and (launched == 0 or self.clock() + self._host_wait_s(in_flight) < deadline)
        )

    def _host_wait_s(self, in_flight: int) -> float:
        """How long the next page would wait for its host: launching no page that could not start before the
        deadline keeps a paused or Crawl-delayed host from stretching the slice (the first launch of a slice
        always goes, so every slice makes progress). Visits launched but not yet at the gate count too."""
        gate, url = self.visitor.gate, self.frontier[0].url
        return max(gate.wait_s(url), in_flight * gate.delay_of(url))

    def _exhausted(self) -> bool:
        limit = self.request.limit
        return not self.frontier or self.progress.pages_done >= limit or self.progress.pages_failed >= limit

    def _launch(self) -> None:
        entry = self.frontier.popleft()
        seq = self.next_seq
        self.next_seq += 1
        self.entries[seq] = entry
        budget = self.start_budget_s if seq == 0 else None
        self.window[seq] = asyncio.ensure_future(self._visit(seq, entry, budget))

    def _one_start(self) -> bool:
        """Whether the crawl has one start URL whose failure fails the task (not a list, not sitemap-only)."""
        return self.request.urls is None and self.request.sitemap != "only"

    async def _visit(self, seq: int, entry: FrontierEntry, budget: float | None) -> Visit:
        """Visit `entry`: conditionally when the knowledge base holds a version this crawl could reuse (a 304 then
        reuses it), or not at all when that version is younger than `max_age`."""
        request = self.request
        document = await self.documents.get(self.task.tenant_id, request.knowledge_base_id, entry.url)
        base = self.bases[seq] = document.base_for(self.task.task_id) if document else None
        stored = await self._stored_page(base) if versions.reusable(base, request, entry.depth) else None
        if stored is not None and base is not None and versions.fresh(base, request):
            page = versions.as_this_crawl(stored, request, entry.depth, cached=True)
            return Visit(Outcome.DONE, page, links=stored.links or [], etag=base.etag, last_modified=base.last_modified)
        headers = versions.validators(base) if stored is not None and base is not None else None
        visit = await self.visitor.visit(
            entry.url, entry.depth, request, not_after=self.deadline, budget_s=budget, validators=headers
        )
        if stored is None or base is None or visit.page is None or not visit.page.not_modified:
            return visit
        page = versions.as_this_crawl(stored, request, entry.depth, cached=False)
        return Visit(
            Outcome.DONE,
            page,
            links=stored.links or [],
            etag=visit.etag or base.etag,
            last_modified=visit.last_modified or base.last_modified,
        )

    async def _stored_page(self, base: DocumentVersion | None) -> Page | None:
        if base is None:
            return None
        raw = await self.store.get_page_json(self.task.tenant_id, base.task_id, base.seq)
        stored = Page.model_validate_json(raw) if raw else None
        return stored if stored is not None and stored.error is None else None

    async def _commit_ready(self, waker: asyncio.Future[Any] | None) -> Visit | None:
        """Wait for progress (or a shutdown, or the end of its grace), then commit every finished page at the head
        of the window, in order."""
        head = self.window[self.commit_seq]
        if not head.done():
            pending: set[asyncio.Future[Any]] = {t for t in self.window.values() if not t.done()}
            timeout = None
            if waker is not None and not waker.done():
                pending.add(waker)
            elif self.shutdown is not None:
                timeout = self.shutdown.remaining_s()
            await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        while self.commit_seq in self.window and self.window[self.commit_seq].done():
            seq = self.commit_seq
            visit = _result(self.window.pop(seq), self.entries[seq])
            entry = self.entries.pop(seq)
            self.commit_seq += 1
            if seq == 0 and visit.outcome is not Outcome.DONE and self._one_start():
                return visit  # the one start URL failed: so does the task (a list of URLs fails page by page)
            await self._commit(seq, entry, visit)
        return None

    async def _commit(self, seq: int, entry: FrontierEntry, visit: Visit) -> None:
        base = self.bases.pop(seq, None)
        if visit.outcome is Outcome.SKIPPED:
            self.progress.pages_skipped += 1
            telemetry.recorder().page(self.task.tenant_id, "skipped", None)
            return
        assert visit.page is not None
        if visit.outcome is Outcome.FAILED:
            self.progress.pages_failed += 1
            held = base is not None and base.change is not Change.REMOVED
            if held and visit.page.status_code in GONE_STATUS:
                visit.page.change = Change.REMOVED
            await self._store(seq, visit.page, visit, base)
            return
        final = visit.page.final_url
        if final and final != entry.url:
            final_key = url_key(final)
            if final_key in self.seen:  # a redirect onto a page this crawl already has (or will have)
                self.progress.pages_skipped += 1
                telemetry.recorder().page(self.task.tenant_id, "skipped", None)
                return
            self.seen.add(final_key)
        self.progress.pages_done += 1
        visit.page.change = versions.classify(base, visit.page)
        await self._store(seq, visit.page, visit, base)
        self._discover(visit.links, entry.depth + 1)

    async def _store(self, seq: int, page: Page, visit: Visit, base: DocumentVersion | None) -> None:
        """Store the page, then (for a page with a change) the knowledge base's document pointing at it."""
        tenant_id, task_id = self.task.tenant_id, self.task.task_id
        size = await self.store.put_page(tenant_id, task_id, seq, page)
        telemetry.recorder().page(tenant_id, "failed" if page.error else "stored", getattr(page.error, "code", None))
        if page.change is not None:
            self.changes.count(page.change)
            document = versions.document(page, base, self.request, task_id=task_id, seq=seq, visit=visit)
            await self.documents.put(tenant_id, self.request.knowledge_base_id, document, page_bytes=size)
        if self.on_page is not None:
            await self.on_page(seq, page, self.progress.model_copy())

    def _hand_back(self) -> None:
        """Put the pages launched but not committed back at the head of the frontier, in order: the next slice
        starts them again under the same sequence numbers."""
        for seq in sorted(self.window, reverse=True):
            self.frontier.appendleft(self.entries.pop(seq))
        log.info("handing back %d unfinished pages of task %s", len(self.window), self.task.task_id)
        self.next_seq = self.commit_seq

    def _looks_for_sitemaps(self) -> bool:
        """`only` always; `include` when a sitemap's URL could be visited at all: the limit leaves room after the
        start URLs and the depth admits a page one step from them (a one-page scrape makes no sitemap request)."""
        request = self.request
        if request.sitemap == "include":
            room = request.limit > len(request.start_urls())
            return room and (request.max_depth is None or request.max_depth >= 1)
        return request.sitemap == "only"

    async def _add_sitemap_urls(self) -> None:
        """The first slice looks for sitemaps: their URLs join the frontier after the start URLs (`include`), or
        are all it crawls (`only`, at depth 0 and without following links)."""
        only = self.request.sitemap == "only"
        depth = 0 if only else 1
        found = await self._sitemap_urls(
            lambda url: (only or url_key(url) not in self.seen) and self.scope.allows(url, depth)
        )
        if only:
            self.frontier.clear()
            self.seen.clear()
        for url in found:
            self.seen.add(url_key(url))
            self.frontier.append(FrontierEntry(url=url, depth=depth))

    async def _sitemap_urls(self, wanted: Callable[[str], bool]) -> list[str]:
        """The sitemaps' URLs: the knowledge base's kept discovery when it is younger than `max_age` (no request),
        else a new discovery, kept when every sitemap file could be read."""
        tenant_id, kb_id = self.task.tenant_id, self.request.knowledge_base_id
        max_urls = max(0, self.max_seen - len(self.seen))
        digest = discovery_digest(self.request, max_urls)
        kept = await self.documents.discovery(tenant_id, kb_id, digest) if self.request.max_age else None
        if kept is not None and time.time() - kept.fetched_at < self.request.max_age:
            self.sitemap = kept.report.model_copy(update={"cached": True})
            return kept.urls
        started = time.time()
        found, self.sitemap = await self.visitor.sitemap_urls(
            self.request.start_urls(), wanted=wanted, max_urls=max_urls
        )
        if not self.sitemap.errors:
            await self.documents.put_discovery(tenant_id, kb_id, digest, Discovery(found, self.sitemap, started))
        return found

    def _discover(self, links: list[str], depth: int) -> None:
        if self.request.sitemap == "only":
            return  # exactly the sitemaps' URLs
        for link in links:
            if len(self.seen) >= self.max_seen:
                return
            if len(link) > self.settings.fetch_max_url_length:
                continue  # crawl traps grow URLs without end
            key = url_key(link)
            if key in self.seen or not self.scope.allows(link, depth):
                continue
            self.seen.add(key)
            self.frontier.append(FrontierEntry(url=link, depth=depth))

    async def _publish_progress(self) -> None:
        now = self.clock()
        if self.on_progress is None or now - self._progress_sent_at < self.settings.progress_interval_s:
            return
        self._progress_sent_at = now
        await self.on_progress(self.progress.model_copy())

    async def _cancelled(self) -> bool:
        now = self.clock()
        if now - self._cancel_checked_at < self.settings.cancel_check_interval_s:
            return False
        self._cancel_checked_at = now
        return await self.cancel_requested()

    def _state(self) -> CrawlState:
        return CrawlState(
            next_slice=self.slice_no + 1,
            frontier=list(self.frontier),
            seen=sorted(self.seen),
            next_seq=self.next_seq,
            progress=self.progress,
            changes=self.changes,
            sitemap=self.sitemap,
        )


def _result(done: asyncio.Task[Visit], entry: FrontierEntry) -> Visit:
    """A finished visit; a bug in a visit fails that page, never the slice."""
    try:
        return done.result()
    except StorageError:
        raise  # the slice fails and runs again; the page is not at fault
    except Exception as exc:
        log.exception("visit of %s crashed", entry.url)
        page = Page(url=entry.url, depth=entry.depth, error=PageError(code="internal_error", message=str(exc)))
        return Visit(Outcome.FAILED, page)


def initial_state(task: Task) -> CrawlState:
    """The checkpoint before the first slice: the start URL alone on the frontier."""
    return CrawlState(
        frontier=[FrontierEntry(url=url, depth=0) for url in task.request.start_urls()],
        seen=sorted({url_key(url) for url in task.request.start_urls()}),
        progress=Progress(),
    )

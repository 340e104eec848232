"""The at-least-once rules of a crawl message, one row each, over the in-memory backends and a fake site."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from consumer.crawl.hostgate import HostGate
from consumer.crawl.job import CrawlHandler
from consumer.crawl.visit import Outcome, Visit
from shared.backends.factory import open_memory_backends
from shared.models import CrawlState, FrontierEntry, Page, Progress, ScrapeRequest, SitemapReport, Task, TaskStatus
from shared.settings import Settings
from shared.stores.events import EventLog
from shared.stores.tasks import Claim, TaskStore

TENANT, TASK, SITE = "t_rules", "task_rules", "https://site.test"
NOW = 1_000_000.0
MAX_RETRIES = 2
SLICE_PAGES = 3


class FakeSite:
    """Every page `/p/N` links to `/p/2N+1` and `/p/2N+2`; the visits made are recorded."""

    def __init__(self) -> None:
        self.gate = HostGate(max_concurrency=4, min_delay_s=0, max_delay_s=0)
        self.visited: list[str] = []

    async def visit(self, url: str, depth: int, request: ScrapeRequest, **_: float | None) -> Visit:
        self.visited.append(url)
        n = int(url.rsplit("/", 1)[1])
        page = Page(url=url, status_code=200, depth=depth, markdown=f"# page {n}")
        return Visit(Outcome.DONE, page, links=[f"{SITE}/p/{2 * n + 1}", f"{SITE}/p/{2 * n + 2}"])

    async def sitemap_urls(self, start_urls: list[str], **_: object) -> tuple[list[str], SitemapReport]:
        return [], SitemapReport()  # the site has no sitemap


@dataclass
class World:
    handler: CrawlHandler
    store: TaskStore
    site: FakeSite
    backends: Any
    clock: list[float] = field(default_factory=lambda: [NOW])

    async def sent(self) -> list[dict[str, Any]]:
        """The crawl messages the handler queued (and were not yet taken)."""
        messages = await self.backends.jobs.receive(max_messages=100, wait_s=0)
        return [m.body for m in messages if m.body.get("kind") == "crawl"]

    async def task(self) -> Task:
        task = await self.store.get(TENANT, TASK)
        assert task is not None
        return task

    async def pages(self) -> list[Page]:
        listed, _ = await self.store.list_pages_json(TENANT, TASK, cursor=None, limit=100)
        return [Page.model_validate_json(raw) for raw in listed]


async def make_world(limit: int = 5) -> World:
    clock = [NOW]
    backends = open_memory_backends(visibility_timeout_s=30, max_retries=MAX_RETRIES, clock=lambda: clock[0])
    settings = Settings(
        slice_max_pages=SLICE_PAGES, queue_max_retries=MAX_RETRIES, crawl_concurrency=2, queue_visibility_timeout_s=30
    )
    store = TaskStore(backends.kv)
    site = FakeSite()
    handler = CrawlHandler(
        store=store,
        quotas=backends.quotas,
        jobs=backends.jobs,
        events=EventLog(backends.kv, backends.jobs, retention_s=3600),
        visitor=site,  # type: ignore[arg-type]
        settings=settings,
        clock=lambda: clock[0],
    )
    request = ScrapeRequest(url=f"{SITE}/p/0", knowledge_base_id="kb", limit=limit)
    await store.create(Task(task_id=TASK, tenant_id=TENANT, request=request))
    return World(handler, store, site, backends, clock)


def job(slice_: int = 0) -> dict[str, Any]:
    return {"kind": "crawl", "tenant_id": TENANT, "task_id": TASK, "slice": slice_}


def checkpoint(next_slice: int, next_seq: int) -> CrawlState:
    """The checkpoint after `next_slice` slices of SLICE_PAGES pages: the frontier continues the fake site's BFS."""
    frontier = [FrontierEntry(url=f"{SITE}/p/{n}", depth=1) for n in range(next_seq, next_seq + 4)]
    return CrawlState(
        next_slice=next_slice,
        frontier=frontier,
        next_seq=next_seq,
        progress=Progress(pages_done=next_seq),
    )


Arrange = Callable[[World], Awaitable[None]]


async def nothing(world: World) -> None:
    return None


def with_state(next_slice: int, next_seq: int) -> Arrange:
    async def arrange(world: World) -> None:
        await world.store.save_state(TENANT, TASK, checkpoint(next_slice, next_seq))
        task = await world.task()
        task.status, task.slices = TaskStatus.RUNNING, next_slice
        await world.store.save(task)

    return arrange


def with_claim(owner: str, *, expires_in_s: float, slice_: int = 0) -> Arrange:
    async def arrange(world: World) -> None:
        await world.store.save_claim(TENANT, TASK, Claim(slice=slice_, owner=owner, expires_at=NOW + expires_in_s))

    return arrange


def with_status(status: TaskStatus) -> Arrange:
    async def arrange(world: World) -> None:
        task = await world.task()
        task.status = status
        await world.store.save(task)

    return arrange


async def with_cancel(world: World) -> None:
    await world.store.request_cancel(TENANT, TASK)


async def without_task(world: World) -> None:
    await world.backends.kv.delete(f"tenant:{TENANT}:task:{TASK}")


def both(*steps: Arrange) -> Arrange:
    async def arrange(world: World) -> None:
        for step in steps:
            await step(world)

    return arrange


@dataclass(frozen=True)
class Row:
    name: str
    arrange: Arrange
    body: dict[str, Any]
    attempts: int = 1
    message_id: str = "m1"
    #: Made visible again after a (positive) delay, rather than acknowledged.
    retried: bool = False
    visits: int = 0
    #: The slices of the crawl messages it queued.
    follow_ups: tuple[int, ...] = ()
    status: TaskStatus | None = None
    error_code: str | None = None


ROWS = [
    Row("a malformed message is dropped", nothing, {"kind": "crawl", "task_id": 3}, status=TaskStatus.QUEUED),
    Row("a task not visible yet is tried again", without_task, job(), retried=True),
    Row("a task still not visible after the retries is dropped", without_task, job(), attempts=MAX_RETRIES + 1),
    Row("an ended task ignores its messages", with_status(TaskStatus.COMPLETED), job(), status=TaskStatus.COMPLETED),
    Row(
        "the first slice runs and queues the next",
        nothing,
        job(0),
        visits=3,
        follow_ups=(1,),
        status=TaskStatus.RUNNING,
    ),
    Row(
        "a slice that already ran re-sends its follow-up and runs nothing",
        with_state(2, 6),
        job(1),
        follow_ups=(2,),
        status=TaskStatus.RUNNING,
    ),
    Row("an older duplicate is dropped", with_state(2, 6), job(0), status=TaskStatus.RUNNING),
    Row(
        "a slice ahead of the visible checkpoint waits",
        with_state(1, 3),
        job(2),
        retried=True,
        status=TaskStatus.RUNNING,
    ),
    Row("a later slice with no checkpoint at all waits", nothing, job(1), retried=True, status=TaskStatus.QUEUED),
    Row(
        "a checkpoint lost for good fails the task",
        nothing,
        job(1),
        attempts=MAX_RETRIES + 1,
        status=TaskStatus.FAILED,
        error_code="checkpoint_lost",
    ),
    Row(
        "a duplicate of a slice another delivery is running backs off",
        with_claim("m-other", expires_in_s=10),
        job(0),
        status=TaskStatus.QUEUED,
    ),
    Row(
        "a claim that expired is taken over",
        with_claim("m-other", expires_in_s=-1),
        job(0),
        visits=3,
        follow_ups=(1,),
        status=TaskStatus.RUNNING,
    ),
    Row(
        "a claim on another slice does not block",
        both(with_state(1, 3), with_claim("m-other", expires_in_s=10, slice_=0)),
        job(1),
        visits=2,
        status=TaskStatus.COMPLETED,
    ),
    Row(
        "a redelivery of the same message takes over its own claim",
        with_claim("m1", expires_in_s=10),
        job(0),
        attempts=2,
        visits=3,
        follow_ups=(1,),
        status=TaskStatus.RUNNING,
    ),
    Row("a cancel request ends the task before the slice", with_cancel, job(0), status=TaskStatus.CANCELLED),
    Row("the last slice completes the task", with_state(1, 3), job(1), visits=2, status=TaskStatus.COMPLETED),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
async def test_a_crawl_message(row: Row) -> None:
    world = await make_world(limit=5)
    await row.arrange(world)
    decision = await world.handler.handle(row.body, message_id=row.message_id, attempts=row.attempts)
    assert (decision.retry_after_s is not None and decision.retry_after_s > 0) if row.retried else decision.ack
    assert len(world.site.visited) == row.visits
    assert tuple(m["slice"] for m in await world.sent()) == row.follow_ups
    if row.status is not None:
        task = await world.task()
        assert task.status == row.status
        assert (task.error.code if task.error else None) == row.error_code


async def test_a_redelivered_slice_replaces_the_pages_its_dead_run_stored() -> None:
    """The first delivery stored pages past the checkpoint and died; the redelivery stores each seq once."""
    world = await make_world(limit=5)
    assert (await world.handler.handle(job(0), message_id="m1", attempts=1)).ack
    await world.sent()
    stray = Page(url=f"{SITE}/p/99", status_code=200, markdown="from a run that died")
    # A seq past slice 0's checkpoint that this run will not write again (the dead run's window got further).
    await world.store.put_page(TENANT, TASK, 7, stray)
    assert (await world.handler.handle(job(1), message_id="m2", attempts=2)).ack
    pages = await world.pages()
    assert [p.url for p in pages] == [f"{SITE}/p/{n}" for n in range(5)]
    assert (await world.task()).status is TaskStatus.COMPLETED


async def test_each_lifecycle_event_is_recorded_once_however_often_the_message_comes() -> None:
    world = await make_world(limit=2)
    events = world.handler.events
    for attempt in (1, 2, 3):
        assert (await world.handler.handle(job(0), message_id="m1", attempts=attempt)).ack
    assert (await world.task()).status is TaskStatus.COMPLETED
    assert len(world.site.visited) == 2  # the ended task ignored the two redeliveries
    feed, _ = await events.feed(TENANT, task_id=TASK, after=None, limit=100)
    assert [event["type"] for event in feed] == ["task.started", "task.completed"]
    assert len({event["id"] for event in feed}) == 2

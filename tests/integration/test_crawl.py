"""The consumer against a real loopback site: BFS within scope, limits, robots, slices, redelivery, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from consumer.crawl.slice import CrawlSlice, SliceResult
from consumer.fetch.client import build_client
from consumer.handler import JobHandler, make_handler
from shared.backends.base import Backends
from shared.models import CrawlJob, Format, Progress, ScrapeRequest, Task, TaskStatus
from shared.settings import Settings
from shared.stores.tasks import TaskStore
from tests.conftest import make_settings
from tests.fixtures.sitegen import generate
from tests.fixtures.static import serve_directory

TENANT = "tn_test"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("site")
    generate(root, pages=120, seed=5)
    with serve_directory(root) as base:
        yield base


@pytest.fixture
def crawl_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, slice_max_pages=7, crawl_concurrency=4)


@pytest.fixture
async def handler(crawl_settings: Settings, backends: Backends) -> AsyncIterator[JobHandler]:
    async with build_client(crawl_settings) as client:
        yield make_handler(crawl_settings, backends, client=client)


async def start(backends: Backends, url: str, **fields: object) -> Task:
    request = ScrapeRequest.model_validate({"url": url, "knowledge_base_id": "kb", **fields})
    task = Task(task_id=f"{len(fields):032x}", tenant_id=TENANT, request=request)
    await TaskStore(backends.kv).create(task)
    await backends.jobs.send(CrawlJob(tenant_id=TENANT, task_id=task.task_id).model_dump(mode="json"))
    return task


async def drain(backends: Backends, handler: JobHandler, *, max_messages: int = 1000) -> int:
    """Deliver messages until the queue is empty; returns how many deliveries were handled."""
    handled = 0
    while messages := await backends.jobs.receive(max_messages=1):
        for message in messages:
            decision = await handler.handle(message.body, message_id=message.id, attempts=message.attempts)
            if decision.ack:
                await backends.jobs.ack(message)
            else:
                await backends.jobs.retry(message, delay_s=0)
            handled += 1
        assert handled < max_messages
    return handled


async def pages_of(backends: Backends, task: Task) -> list[dict[str, object]]:
    import json

    raw, cursor = await TaskStore(backends.kv).list_pages_json(TENANT, task.task_id, cursor=None, limit=1000)
    assert cursor is None
    return [json.loads(r) for r in raw]


async def finished(backends: Backends, task: Task) -> Task:
    stored = await TaskStore(backends.kv).get(TENANT, task.task_id)
    assert stored is not None
    return stored


async def test_a_crawl_stores_exactly_limit_pages_over_several_slices(
    site: str, backends: Backends, handler: JobHandler
) -> None:
    task = await start(backends, f"{site}/index.html", limit=30)
    deliveries = await drain(backends, handler)
    done = await finished(backends, task)
    pages = await pages_of(backends, task)
    assert done.status is TaskStatus.COMPLETED
    assert done.progress.pages_done == 30 == len(pages)
    assert len({p["url"] for p in pages}) == 30
    assert deliveries >= 30 // 7  # the crawl really ran in bounded slices
    assert all(p["markdown"] and p["title"] and p["links"] is not None for p in pages)
    depths = [p["depth"] for p in pages]
    assert depths == sorted(depths)  # breadth-first order


async def test_robots_disallowed_pages_are_skipped_not_failed(
    site: str, backends: Backends, handler: JobHandler
) -> None:
    task = await start(backends, f"{site}/index.html", limit=500)
    await drain(backends, handler)
    done = await finished(backends, task)
    pages = await pages_of(backends, task)
    assert done.status is TaskStatus.COMPLETED
    assert not any("/private/" in str(p["url"]) for p in pages)
    assert done.progress.pages_skipped > 0
    assert done.progress.pages_failed == 0
    assert done.progress.pages_done == len(pages) == 120 - done.progress.pages_skipped


async def test_max_depth_and_path_filters_bound_the_crawl(site: str, backends: Backends, handler: JobHandler) -> None:
    task = await start(backends, f"{site}/index.html", limit=500, max_depth=1, include_paths=["^/docs/"])
    await drain(backends, handler)
    pages = await pages_of(backends, task)
    assert pages[0]["url"] == f"{site}/index.html"
    assert all(p["depth"] <= 1 for p in pages)
    assert all("/docs/" in str(p["url"]) for p in pages[1:])


async def test_only_the_requested_formats_are_filled(site: str, backends: Backends, handler: JobHandler) -> None:
    task = await start(backends, f"{site}/index.html", limit=1, formats=[Format.TEXT, Format.HTML])
    await drain(backends, handler)
    [page] = await pages_of(backends, task)
    assert page["text"] and page["html"]
    assert page["markdown"] is None and page["links"] is None and page["title"] is None
    assert str(page["content_hash"]).startswith("sha256:")


async def test_a_redelivered_slice_stores_each_page_once(site: str, backends: Backends, handler: JobHandler) -> None:
    task = await start(backends, f"{site}/index.html", limit=20)
    [message] = await backends.jobs.receive(max_messages=1)
    # The first delivery runs but "dies" before acking: the lease expires and the same message comes back.
    await handler.handle(message.body, message_id=message.id, attempts=1)
    await handler.handle(message.body, message_id=message.id, attempts=2)
    await backends.jobs.ack(message)
    await drain(backends, handler)
    done = await finished(backends, task)
    pages = await pages_of(backends, task)
    assert done.status is TaskStatus.COMPLETED
    assert len(pages) == len({p["url"] for p in pages}) == 20 == done.progress.pages_done


async def test_a_duplicate_follow_up_message_is_dropped(site: str, backends: Backends, handler: JobHandler) -> None:
    task = await start(backends, f"{site}/index.html", limit=20)
    [first] = await backends.jobs.receive(max_messages=1)
    await handler.handle(first.body, message_id=first.id, attempts=1)
    await backends.jobs.ack(first)
    # The consumer died after sending slice 1 but before acking slice 0: slice 0 comes back, re-sends slice 1.
    await handler.handle(first.body, message_id="redelivered-0", attempts=2)
    await drain(backends, handler)
    pages = await pages_of(backends, task)
    assert len(pages) == len({p["url"] for p in pages}) == 20


async def test_cancel_stops_the_crawl_at_a_page_boundary(site: str, backends: Backends, handler: JobHandler) -> None:
    task = await start(backends, f"{site}/index.html", limit=100)
    [message] = await backends.jobs.receive(max_messages=1)
    await handler.handle(message.body, message_id=message.id, attempts=1)
    await backends.jobs.ack(message)
    await TaskStore(backends.kv).request_cancel(TENANT, task.task_id)
    await drain(backends, handler)
    done = await finished(backends, task)
    assert done.status is TaskStatus.CANCELLED
    assert done.progress.pages_done == 7 == len(await pages_of(backends, task))
    assert done.finished_at is not None


async def test_an_unreachable_start_url_fails_the_task_after_retries(backends: Backends, handler: JobHandler) -> None:
    task = await start(backends, "http://127.0.0.1:9/nothing-listens-here")
    await drain(backends, handler)
    done = await finished(backends, task)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None
    assert done.error.code == "robots_unreachable"


async def test_a_start_url_answering_404_fails_the_task(site: str, backends: Backends, handler: JobHandler) -> None:
    task = await start(backends, f"{site}/missing.html")
    await drain(backends, handler)
    done = await finished(backends, task)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None and done.error.code == "http_status"


async def test_a_dead_lettered_slice_is_sent_again_then_fails_its_task(
    backends: Backends, handler: JobHandler, crawl_settings: Settings
) -> None:
    """Deliveries lost to killed workers dead-letter a slice too: it is sent again a few times, then fails."""
    task = await start(backends, "http://127.0.0.1:9/")
    [message] = await backends.jobs.receive(max_messages=1)
    for revival in range(1, crawl_settings.queue_max_revivals + 1):
        await handler.handle_dead_letter(message.body)
        [message] = await backends.jobs.receive(max_messages=10)
        assert message.body["slice"] == 0 and message.attempts == 1
        assert (await finished(backends, task)).revivals == revival
    await handler.handle_dead_letter(message.body)
    assert await backends.jobs.receive(max_messages=10) == []
    done = await finished(backends, task)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None and done.error.code == "retries_exhausted"


async def test_a_dead_lettered_slice_that_already_ran_is_dropped(
    site: str, backends: Backends, handler: JobHandler
) -> None:
    task = await start(backends, f"{site}/index.html", limit=20)
    [first] = await backends.jobs.receive(max_messages=1)
    assert (await handler.handle(first.body, message_id=first.id, attempts=1)).ack
    await backends.jobs.ack(first)
    await handler.handle_dead_letter(first.body)  # slice 0 ran and checkpointed: its follow-up carries the crawl
    [follow_up] = await backends.jobs.receive(max_messages=10)
    assert follow_up.body["slice"] == 1
    assert (await finished(backends, task)).revivals == 0


async def test_a_slice_ahead_of_the_visible_checkpoint_waits_instead_of_being_dropped(
    site: str, backends: Backends, handler: JobHandler
) -> None:
    task = await start(backends, f"{site}/index.html", limit=30)
    [first] = await backends.jobs.receive(max_messages=1)
    await backends.jobs.ack(first)
    # Slice 3 arrives while this location still reads no checkpoint at all (eventual consistency).
    ahead = CrawlJob(tenant_id=TENANT, task_id=task.task_id, slice=3).model_dump(mode="json")
    decision = await handler.handle(ahead, message_id="m-ahead", attempts=1)
    assert not decision.ack and decision.retry_after_s is not None
    # After the retries, the task fails visibly instead of staying "running" forever.
    assert (await handler.handle(ahead, message_id="m-ahead", attempts=99)).ack
    done = await finished(backends, task)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None and done.error.code == "checkpoint_lost"


async def test_a_running_slice_publishes_its_progress_between_checkpoints(
    site: str, backends: Backends, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, slice_max_pages=100, crawl_concurrency=2, progress_interval_s=0)
    published: list[int] = []
    save = TaskStore.save_live_progress

    async def spy(self: TaskStore, tenant_id: str, task_id: str, progress: Progress) -> None:
        published.append(progress.pages_done)
        await save(self, tenant_id, task_id, progress)

    monkeypatch.setattr(TaskStore, "save_live_progress", spy)
    task = await start(backends, site + "/index.html", limit=30)
    async with build_client(settings) as client:
        assert await drain(backends, make_handler(settings, backends, client=client)) == 1  # one slice
    # Published as pages were committed, before the slice's one checkpoint at its end.
    assert published == sorted(published) and published[-1] == 30
    assert len([done for done in published if 0 < done < 30]) >= 10
    assert await TaskStore(backends.kv).live_progress(TENANT, task.task_id) is None  # gone once the task ended


async def test_a_slow_slice_finishing_after_its_task_ended_does_not_bring_the_task_back(
    site: str, backends: Backends, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose claim lapsed while others took over and ended the task must not save its checkpoint and the
    task as `running` again: no message would be left to carry it, and it would stay running for ever."""
    settings = make_settings(tmp_path, slice_max_pages=3, crawl_concurrency=2, queue_visibility_timeout_s=0.05)
    task = await start(backends, f"{site}/index.html", limit=9)
    release = asyncio.Event()
    real_run = CrawlSlice.run
    runs = 0

    async def run(self: CrawlSlice) -> SliceResult:
        nonlocal runs
        runs += 1
        result = await real_run(self)
        if runs == 2:  # the first run of slice 1 is the slow one
            await release.wait()
        return result

    monkeypatch.setattr(CrawlSlice, "run", run)
    async with build_client(settings) as client:
        handler = make_handler(settings, backends, client=client)
        [first] = await backends.jobs.receive(max_messages=1)
        assert (await handler.handle(first.body, message_id=first.id, attempts=1)).ack
        await backends.jobs.ack(first)
        [second] = await backends.jobs.receive(max_messages=1)
        slow = asyncio.create_task(handler.handle(second.body, message_id=second.id, attempts=1))
        while runs < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # its claim lapses; a duplicate of the message takes over
        assert (await handler.handle(second.body, message_id="duplicate", attempts=1)).ack
        [third] = await backends.jobs.receive(max_messages=1)  # and slice 2, the last, ends the task
        assert (await handler.handle(third.body, message_id=third.id, attempts=1)).ack
        await backends.jobs.ack(third)
        assert (await finished(backends, task)).status is TaskStatus.COMPLETED
        release.set()
        assert (await slow).ack
    await backends.jobs.ack(second)
    ended = await finished(backends, task)
    assert ended.status is TaskStatus.COMPLETED and ended.progress.pages_done == 9
    assert await TaskStore(backends.kv).get_state(TENANT, task.task_id) is None
    assert await backends.jobs.receive(max_messages=10) == []  # no follow-up was sent for a finished crawl

"""Processing one queue message into a decision (ack, or retry after a delay).

The same decisions drive the local worker (`SqliteQueue.ack/retry`) and, on Cloudflare, `message.ack()` /
`message.retry(delaySeconds=...)`. Delivery is at least once, so every step is safe to repeat: a message for a
slice that already ran re-sends the follow-up (the first run may have died before sending it) and a second
delivery of a running slice backs off while the first holds a fresh claim.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import httpx
from pydantic import ValidationError

from consumer.crawl import CrawlSlice, SliceResult, initial_state
from consumer.fetch import Fetcher
from consumer.robots import ANY_TYPE, RobotsCache
from consumer.visit import Visitor
from shared.models import TERMINAL, CrawlJob, CrawlState, Task, TaskError, TaskStatus, utcnow
from shared.ports import Clock, JobQueue, JsonObject, KeyValueStore
from shared.retry import backoff_s
from shared.settings import Settings
from shared.taskstore import Claim, TaskStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """What to do with a delivered message: ack it, or make it visible again after `retry_after_s`."""

    retry_after_s: float | None = None

    @property
    def ack(self) -> bool:
        return self.retry_after_s is None


ACK = Decision()


def retry(after_s: float) -> Decision:
    return Decision(retry_after_s=after_s)


class JobHandler:
    """Runs crawl slices for queue messages; stateless between messages."""

    def __init__(self, *, store: TaskStore, jobs: JobQueue, visitor: Visitor, settings: Settings, clock: Clock) -> None:
        self.store = store
        self.jobs = jobs
        self.visitor = visitor
        self.settings = settings
        self.clock = clock

    async def handle(self, body: JsonObject, *, message_id: str, attempts: int) -> Decision:
        try:
            job = CrawlJob.model_validate(body)
        except ValidationError:
            log.error("dropping a malformed message: %.200r", body)
            return ACK
        task = await self.store.get(job.tenant_id, job.task_id)
        if task is None:
            # KV reads are eventually consistent on Cloudflare: the record may not be visible here yet.
            return self._retry_or_drop(job, attempts, "task record not found")
        if task.status in TERMINAL:
            return ACK
        state = await self.store.get_state(job.tenant_id, job.task_id)
        if state is None and job.slice == 0:
            state = initial_state(task)
        if state is None or job.slice > state.next_slice:
            # The checkpoint this slice continues from is not visible here yet (KV is eventually consistent).
            return await self._wait_for_checkpoint(task, job, attempts)
        if job.slice != state.next_slice:
            return await self._stale(job, state)
        if await self.store.cancel_requested(task.tenant_id, task.task_id):
            await self._finish(task, state, TaskStatus.CANCELLED)
            return ACK
        if not await self._claim(job, message_id):
            return ACK
        return await self._run(task, state, job, attempts)

    async def handle_dead_letter(self, body: JsonObject) -> None:
        """A message that exhausted its retries: its task fails instead of waiting forever."""
        try:
            job = CrawlJob.model_validate(body)
        except ValidationError:
            return
        task = await self.store.get(job.tenant_id, job.task_id)
        if task is not None and task.status not in TERMINAL:
            task.error = TaskError(code="retries_exhausted", message="the crawl failed repeatedly and was abandoned")
            await self._finish(task, None, TaskStatus.FAILED)

    async def _run(self, task: Task, state: CrawlState, job: CrawlJob, attempts: int) -> Decision:
        if attempts > 1:
            # A previous delivery may have stored pages past the checkpoint before it died.
            await self.store.delete_pages_from(task.tenant_id, task.task_id, state.next_seq)
        if task.status is TaskStatus.QUEUED:
            task.status = TaskStatus.RUNNING
            task.started_at = utcnow()
            await self.store.save(task)
            log.info("task started", extra={"task_id": task.task_id, "tenant_id": task.tenant_id})

        async def cancel_requested() -> bool:
            return await self.store.cancel_requested(task.tenant_id, task.task_id)

        crawl = CrawlSlice(
            task,
            state,
            visitor=self.visitor,
            store=self.store,
            settings=self.settings,
            clock=self.clock,
            cancel_requested=cancel_requested,
        )
        result = await crawl.run()
        return await self._conclude(task, result, job, attempts)

    async def _conclude(self, task: Task, result: SliceResult, job: CrawlJob, attempts: int) -> Decision:
        if result.start_failure is not None:
            failure = result.start_failure
            if failure.retryable and attempts <= self.settings.queue_max_retries:
                return retry(self._backoff(attempts))
            page_error = failure.page.error if failure.page else None
            task.error = (
                TaskError(code=page_error.code, message=page_error.message)
                if page_error
                else TaskError(code="robots_disallowed", message="robots.txt disallows the start URL")
            )
            await self._finish(task, result.state, TaskStatus.FAILED)
            return ACK
        if result.finished:
            status = TaskStatus.CANCELLED if result.cancelled else TaskStatus.COMPLETED
            await self._finish(task, result.state, status)
            return ACK
        await self.store.save_state(task.tenant_id, task.task_id, result.state)
        task.progress = result.state.progress
        task.slices = result.state.next_slice
        await self.store.save(task)
        await self.jobs.send(job.model_copy(update={"slice": result.state.next_slice}).model_dump(mode="json"))
        return ACK

    async def _finish(self, task: Task, state: CrawlState | None, status: TaskStatus) -> None:
        if state is not None:
            task.progress = state.progress
            task.slices = state.next_slice
        task.status = status
        task.finished_at = utcnow()
        await self.store.save(task)
        # The checkpoint only matters to a running crawl; later deliveries see the terminal status first.
        await self.store.discard_crawl_state(task.tenant_id, task.task_id)
        log.info(
            "task %s",
            status.value,
            extra={"task_id": task.task_id, "tenant_id": task.tenant_id, **task.progress.model_dump()},
        )

    async def _wait_for_checkpoint(self, task: Task, job: CrawlJob, attempts: int) -> Decision:
        if attempts <= self.settings.queue_max_retries:
            log.warning("checkpoint for slice %d of task %s not visible yet; retrying", job.slice, job.task_id)
            return retry(self._backoff(attempts))
        task.error = TaskError(code="checkpoint_lost", message="the crawl's checkpoint could not be read")
        await self._finish(task, None, TaskStatus.FAILED)
        return ACK

    async def _stale(self, job: CrawlJob, state: CrawlState) -> Decision:
        if job.slice == state.next_slice - 1:
            # This slice ran and checkpointed; its follow-up may never have been sent.
            log.info("re-sending slice %d of task %s", state.next_slice, job.task_id)
            await self.jobs.send(job.model_copy(update={"slice": state.next_slice}).model_dump(mode="json"))
        return ACK

    async def _claim(self, job: CrawlJob, message_id: str) -> bool:
        """Take the slice unless another message (a duplicate follow-up) holds a fresh claim on it.

        A redelivery of the same message (its consumer died) always takes over its own claim.
        """
        claim = await self.store.get_claim(job.tenant_id, job.task_id)
        now = self.clock()
        if claim is not None and claim.slice == job.slice and claim.owner != message_id and claim.expires_at > now:
            log.info("slice %d of task %s is already running elsewhere", job.slice, job.task_id)
            return False
        expires = now + self.settings.queue_visibility_timeout_s
        claim = Claim(slice=job.slice, owner=message_id, expires_at=expires)
        await self.store.save_claim(job.tenant_id, job.task_id, claim)
        return True

    def _retry_or_drop(self, job: CrawlJob, attempts: int, reason: str) -> Decision:
        if attempts <= self.settings.queue_max_retries:
            log.warning("%s for task %s; retrying", reason, job.task_id)
            return retry(self._backoff(attempts))
        log.error("%s for task %s; dropping the message", reason, job.task_id)
        return ACK

    def _backoff(self, attempts: int) -> float:
        return backoff_s(attempts, base_s=self.settings.queue_retry_base_s, max_s=self.settings.queue_retry_max_s)


class FetcherRobots:
    """robots.txt through the guarded page fetcher (any content type is accepted for it)."""

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher

    async def fetch_robots(self, url: str) -> tuple[int, bytes]:
        result = await self.fetcher.fetch(url, accept=ANY_TYPE)
        return result.status_code, result.body


def make_handler(
    settings: Settings, *, kv: KeyValueStore, jobs: JobQueue, client: httpx.AsyncClient, clock: Clock = time.time
) -> JobHandler:
    """The consumer's object graph over one shared HTTP client; the same locally and in the consumer Worker."""
    fetcher = Fetcher(client, settings=settings)
    robots = RobotsCache(FetcherRobots(fetcher), ttl_s=settings.robots_cache_ttl_s, clock=clock)
    visitor = Visitor(fetcher=fetcher, robots=robots, max_links=settings.fetch_max_links_per_page)
    return JobHandler(store=TaskStore(kv), jobs=jobs, visitor=visitor, settings=settings, clock=clock)

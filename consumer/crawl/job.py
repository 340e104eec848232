"""Crawl messages: one bounded slice per message, checkpointed, continued in a follow-up message."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from consumer.crawl.metering import SliceMeter
from consumer.crawl.slice import CrawlSlice, PageHook, Shutdown, SliceResult, initial_state
from consumer.crawl.visit import MIN_ATTEMPT_S, Visitor
from consumer.decision import ACK, Decision, retry
from shared import telemetry
from shared.models import (
    TERMINAL,
    CrawlJob,
    CrawlState,
    EventType,
    Page,
    Progress,
    Task,
    TaskError,
    TaskStatus,
    utcnow,
)
from shared.ports import Clock, JobQueue, JsonObject
from shared.retry import backoff_s
from shared.settings import Settings
from shared.stores.erasure import Eraser
from shared.stores.events import EventLog
from shared.stores.quotas import QuotaLedger
from shared.stores.tasks import Claim, TaskStore
from shared.stores.usage import TASK_ENDED, UsageLedger, record

log = logging.getLogger(__name__)

TERMINAL_EVENT = {
    TaskStatus.COMPLETED: EventType.COMPLETED,
    TaskStatus.FAILED: EventType.FAILED,
    TaskStatus.CANCELLED: EventType.CANCELLED,
}
EVENT_STATUS = {event: status for status, event in TERMINAL_EVENT.items()}


def jsonable(value: object) -> object:
    """Pydantic models inside a plain dict, as JSON-ready values."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump else value


class CrawlHandler:
    """Runs crawl slices for queue messages and emits the task's lifecycle events; stateless between messages.

    Delivery is at least once, so every step is safe to repeat: a message for a slice that already ran re-sends the
    follow-up (the first run may have died before sending it), a second delivery of a running slice backs off while
    the first holds a fresh claim, and lifecycle events have stable ids, so they are recorded and sent once.
    """

    def __init__(
        self,
        *,
        store: TaskStore,
        quotas: QuotaLedger,
        jobs: JobQueue,
        events: EventLog,
        visitor: Visitor,
        settings: Settings,
        clock: Clock,
        shutdown: Shutdown | None = None,
        usage: UsageLedger | None = None,
    ) -> None:
        self.store = store
        self.quotas = quotas
        self.jobs = jobs
        self.events = events
        self.visitor = visitor
        self.settings = settings
        self.clock = clock
        self.shutdown = shutdown
        self.usage = usage

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
        """A message that exhausted its retries. A slice that already ran is dropped (its follow-up carries the
        crawl); the current slice is sent again up to `queue_max_revivals` times, as deliveries lost to killed
        workers count too; after that its task fails instead of waiting forever."""
        try:
            job = CrawlJob.model_validate(body)
        except ValidationError:
            return
        task = await self.store.get(job.tenant_id, job.task_id)
        if task is None or task.status in TERMINAL:
            return
        state = await self.store.get_state(job.tenant_id, job.task_id)
        if state is not None and job.slice < state.next_slice:
            log.info("dead-lettered slice %d of task %s had already run", job.slice, job.task_id)
            return
        if task.revivals < self.settings.queue_max_revivals:
            task.revivals += 1
            await self.store.save(task)
            log.warning("slice %d of task %s dead-lettered: sending it again", job.slice, job.task_id)
            await self.jobs.send(job.model_dump(mode="json"))
            return
        task.error = TaskError(code="retries_exhausted", message="the crawl failed repeatedly and was abandoned")
        await self._finish(task, None, TaskStatus.FAILED)

    async def _run(self, task: Task, state: CrawlState, job: CrawlJob, attempts: int) -> Decision:
        telemetry.bind_tenant(task.tenant_id)
        if task.status is TaskStatus.QUEUED:
            task.status = TaskStatus.RUNNING
            task.started_at = utcnow()
            await self.store.save(task)
            log.info("task started", extra={"task_id": task.task_id, "tenant_id": task.tenant_id})
        await self.events.emit(task, EventType.STARTED, kind="started")

        async def cancel_requested() -> bool:
            if await self.store.cancel_requested(task.tenant_id, task.task_id):
                return True
            return await self.store.get(task.tenant_id, task.task_id) is None  # its knowledge base was erased

        began = self.clock()
        meter = SliceMeter(state.progress)
        crawl = CrawlSlice(
            task,
            state,
            visitor=meter.visitor(self.visitor),
            store=self.store,
            settings=self.settings,
            clock=self.clock,
            cancel_requested=cancel_requested,
            on_page=meter.page_hook(self._page_events(task)),
            on_progress=lambda progress: self.store.save_live_progress(task.tenant_id, task.task_id, progress),
            start_budget_s=self._start_budget_s(task) if state.next_seq == 0 else None,
            shutdown=self.shutdown,
        )
        result = await crawl.run()
        telemetry.recorder().slice_ran(task.tenant_id, self.clock() - began)
        return await self._conclude(task, result, job, attempts, began=began, meter=meter)

    async def _conclude(
        self, task: Task, result: SliceResult, job: CrawlJob, attempts: int, *, began: float, meter: SliceMeter
    ) -> Decision:
        """What the slice's run leads to; its usage is counted where its outcome is kept (not where another
        delivery's is, or where the task was erased meanwhile)."""
        counted = meter.counts(result.state.progress)
        if await self.store.get(task.tenant_id, task.task_id) is None:
            await self._purge_erased(task)
            return ACK
        if result.start_failure is not None:
            failure = result.start_failure
            delay = self._backoff(attempts)
            if task.start_page_since is None:
                task.start_page_since = began
            in_budget = self._start_budget_s(task) - delay >= MIN_ATTEMPT_S
            if failure.retryable and attempts <= self.settings.queue_max_retries and in_budget:
                await self.store.save(task)  # the next delivery counts the budget from this attempt's start
                await record(self.usage, task.tenant_id, counted)
                return retry(delay)
            page_error = failure.page.error if failure.page else None
            task.error = (
                TaskError(code=page_error.code, message=page_error.message)
                if page_error
                else TaskError(code="robots_disallowed", message="robots.txt disallows the start URL")
            )
            await self._finish(task, result.state, TaskStatus.FAILED)
            await record(self.usage, task.tenant_id, counted)
            return ACK
        current = await self.store.get_state(task.tenant_id, task.task_id)
        if current is not None and current.next_slice > job.slice:
            # A slow run whose claim lapsed: the delivery that took over already checkpointed this slice (and
            # maybe more). Saving now would set the crawl back; its follow-up is the other run's to send.
            log.info("slice %d of task %s was checkpointed by another delivery", job.slice, job.task_id)
            return ACK
        if current is None and await self.store.has_ended(task.tenant_id, task.task_id):
            # Slower still: the deliveries that took over ended the task (and discarded its checkpoint). Saving
            # now would bring it back to life as `running`, with no message left to carry it.
            log.info("slice %d of task %s ran after its task ended", job.slice, job.task_id)
            return ACK
        if result.finished:
            status = TaskStatus.CANCELLED if result.cancelled else TaskStatus.COMPLETED
            await self._finish(task, result.state, status)
            await record(self.usage, task.tenant_id, counted)
            return ACK
        await self.store.save_state(task.tenant_id, task.task_id, result.state)
        task.progress = result.state.progress
        task.changes = result.state.changes
        task.sitemap = result.state.sitemap
        task.slices = result.state.next_slice
        await self.store.save(task)
        await self.jobs.send(job.model_copy(update={"slice": result.state.next_slice}).model_dump(mode="json"))
        log.info(
            "slice %d checkpointed, slice %d queued",
            job.slice,
            result.state.next_slice,
            extra={"task_id": task.task_id, "tenant_id": task.tenant_id, **task.progress.model_dump()},
        )
        await record(self.usage, task.tenant_id, counted)
        return ACK

    async def _purge_erased(self, task: Task) -> None:
        """The task's knowledge base was erased while this slice ran: delete what the slice stored since."""
        eraser = Eraser(self.store.kv)
        report = await eraser.erase_task(task.tenant_id, task.task_id)
        documents = await eraser.purge_documents_of(task.tenant_id, task.request.knowledge_base_id, task.task_id)
        await self.quotas.release(task.tenant_id, task.task_id)
        await self.store.kv.scrub()
        log.info(
            "task erased while it ran: purged %d keys and %d documents",
            report.keys,
            documents,
            extra={"task_id": task.task_id, "tenant_id": task.tenant_id},
        )

    def _page_events(self, task: Task) -> PageHook | None:
        webhook = task.request.webhook
        if webhook is None or EventType.PAGE not in webhook.events:
            return None  # page events are recorded only for tasks that subscribe to them (volume)

        async def emit(seq: int, page: Page, progress: Progress) -> None:
            summary = {
                "seq": seq,
                "url": page.url,
                "status_code": page.status_code,
                "error": page.error,
                "change": page.change,
            }
            snapshot = task.model_copy(update={"progress": progress})
            await self.events.emit(snapshot, EventType.PAGE, kind=f"page-{seq}", page=jsonable(summary))

        return emit

    async def _finish(self, task: Task, state: CrawlState | None, status: TaskStatus) -> None:
        if state is not None:
            task.progress = state.progress
            task.changes = state.changes
            task.sitemap = state.sitemap
            task.slices = state.next_slice
        task.status = status
        task.finished_at = utcnow()
        # One terminal event per task: if an earlier run of this message already ended the task one way
        # (and died before saving it), that ending stands.
        event = await self.events.emit(task, TERMINAL_EVENT[status], kind="terminal")
        if EVENT_STATUS[EventType(event.type)] is not status:
            stored = await self.store.get(task.tenant_id, task.task_id)
            if stored is not None and stored.status in TERMINAL:
                return  # another delivery ended the task first, and saved it: its record stands whole
            task.status = EVENT_STATUS[EventType(event.type)]
        if state is not None:
            # A delivery that died may have stored pages past where the crawl ended. They are removed only now:
            # deleting them when a slice is redelivered raced a slow first run that had already checkpointed them.
            await self.store.delete_pages_from(task.tenant_id, task.task_id, state.next_seq)
        await self.store.save(task)
        # The checkpoint only matters to a running crawl; later deliveries see the terminal status first.
        await self.store.discard_crawl_state(task.tenant_id, task.task_id)
        # Frees its place in the concurrency quota, and gives back the reserved pages it did not store: failed,
        # skipped and never-crawled pages use none of the day's quota.
        await self.quotas.release(task.tenant_id, task.task_id, used_pages=task.progress.pages_done)
        telemetry.recorder().task_finished(task.tenant_id, task.status.value)
        await record(self.usage, task.tenant_id, {TASK_ENDED[task.status.value]: 1})
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

    def _start_budget_s(self, task: Task) -> float:
        """What is left of the start page's budget. Its attempts count from the first one that failed; a delivery
        that died (worker killed) left no mark, so a redelivery after it gets the whole budget again."""
        budget = self.settings.page_budget_s
        if task.start_page_since is None:
            return budget
        return min(budget, budget - max(0.0, self.clock() - task.start_page_since))

    def _backoff(self, attempts: int) -> float:
        return backoff_s(attempts, base_s=self.settings.queue_retry_base_s, max_s=self.settings.queue_retry_max_s)

"""Accepting a crawl: authorisation of the knowledge base and domain, idempotency, quotas, store-then-enqueue."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import time
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from shared import telemetry, tracing
from shared.errors import (
    BlockedAddress,
    Forbidden,
    IdempotencyKeyInUse,
    IdempotencyMismatch,
    QuotaExceeded,
    ServiceUnavailable,
    StorageError,
    UrlNotAllowed,
)
from shared.guard import AddressPolicy, check_host
from shared.models import CrawlJob, ScrapeRequest, Task, TaskError, TaskStatus, utcnow
from shared.ports import JobQueue
from shared.retry import backoff_s
from shared.stores.accounts import ApiKey, Tenant
from shared.stores.quotas import PAGES_PER_DAY, QuotaLedger, Quotas, TaskLookup, day_start
from shared.stores.tasks import IdempotencyRecord, TaskStore

log = logging.getLogger(__name__)

#: A full concurrency quota frees up when a task ends: worth asking again soon.
CONCURRENCY_RETRY_AFTER_S = 10
#: A reservation of an Idempotency-Key whose task does not exist this long after is taken to be abandoned (its
#: request died between the two writes); a duplicate arriving sooner is told to retry after IN_USE_RETRY_AFTER_S.
ABANDONED_AFTER_S = 30.0
IN_USE_RETRY_AFTER_S = 1


def seconds_to_next_day(now: datetime) -> int:
    """Whole seconds until the next UTC midnight, at least 1: when a pages-per-day quota starts afresh."""
    return max(1, math.ceil((day_start(now) + timedelta(days=1) - now).total_seconds()))


async def reserve_quotas(
    ledger: QuotaLedger,
    tasks: TaskLookup,
    tenant_id: str,
    task_id: str,
    *,
    pages: int,
    quotas: Quotas,
    now: datetime,
) -> None:
    """Count a new task of `pages` against the tenant's quotas, or raise `QuotaExceeded`."""
    allowance = quotas.max_pages_per_day
    if allowance and pages > allowance:
        raise QuotaExceeded(
            f"limit {pages} exceeds the tenant's {allowance} pages per day: no retry can pass",
            quota=PAGES_PER_DAY,
            limit=allowance,
            requested=pages,
            status=422,
        )
    refusal = await ledger.reserve(tenant_id, task_id, pages=pages, quotas=quotas, now=now, tasks=tasks)
    if refusal is None:
        return
    if refusal.quota == PAGES_PER_DAY:
        retry_s = seconds_to_next_day(now)
        log.info("pages per day exhausted", extra={"tenant_id": tenant_id, "used": refusal.used, "requested": pages})
        raise QuotaExceeded(
            f"{refusal.used} of the tenant's {allowance} pages per day are reserved and this task needs {pages}; "
            f"the quota starts afresh at 00:00 UTC, in {retry_s} s",
            quota=PAGES_PER_DAY,
            limit=allowance,
            used=refusal.used,
            requested=pages,
            headers={"Retry-After": str(retry_s)},
        )
    log.info("concurrent tasks exhausted", extra={"tenant_id": tenant_id, "active": refusal.used})
    raise QuotaExceeded(
        f"the tenant has {refusal.used} tasks queued or running, its limit; retry when one has ended",
        headers={"Retry-After": str(CONCURRENCY_RETRY_AFTER_S)},
        quota=refusal.quota,
        limit=quotas.max_concurrent_tasks,
        used=refusal.used,
    )


def authorise(request: ScrapeRequest, *, tenant: Tenant, key: ApiKey, policy: AddressPolicy) -> None:
    """Refuse what this key may not crawl: 403 for knowledge base or domain, 422 for a refused address."""
    if not key.may_use(tenant, request.knowledge_base_id):
        raise Forbidden(f"knowledge base {request.knowledge_base_id!r} is not allowed for this API key")
    for start in request.start_urls():
        host = urlsplit(start).hostname or ""
        if tenant.allowed_domains is not None and not domain_allowed(host, tenant.allowed_domains):
            raise Forbidden(f"domain {host!r} is not in this tenant's allowed domains")
    for url in (*request.start_urls(), request.webhook.url if request.webhook else None):
        if url is None:
            continue
        try:
            check_host(urlsplit(url).hostname or "", policy)
        except BlockedAddress as exc:
            raise UrlNotAllowed(str(exc)) from None


def domain_allowed(host: str, allowed: list[str]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in (a.lower().strip(".") for a in allowed))


def request_hash(request: ScrapeRequest) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


async def submit(
    request: ScrapeRequest,
    *,
    tenant: Tenant,
    idempotency_key: str | None,
    tasks: TaskStore,
    ledger: QuotaLedger,
    jobs: JobQueue,
    idempotency_ttl_s: float,
    quotas: Quotas,
) -> tuple[Task, bool]:
    """Store the task, then enqueue its first slice. Returns the task and whether it is new.

    With an Idempotency-Key the key is reserved first (first writer wins, exactly on SQLite): a duplicate gets the
    original's task, or 409 while the original is still being written; a request that fails gives its key back.
    """
    task = Task(task_id=uuid.uuid4().hex, tenant_id=tenant.tenant_id, request=request)
    tracing.note(task_id=task.task_id)
    record = None
    if idempotency_key is not None:
        record = IdempotencyRecord(
            task_id=task.task_id, request_hash=request_hash(request), reserved_at=task.created_at.timestamp()
        )
        existing = await _reserve(tenant.tenant_id, idempotency_key, record, tasks, ttl_s=idempotency_ttl_s)
        if existing is not None:
            return existing, False  # a replay reserves nothing more
    try:
        await _create(task, tasks=tasks, ledger=ledger, jobs=jobs, quotas=quotas)
    except BaseException:
        if idempotency_key is not None and record is not None:
            await tasks.release_idempotency(tenant.tenant_id, idempotency_key, record)
        raise
    return task, True


async def _create(task: Task, *, tasks: TaskStore, ledger: QuotaLedger, jobs: JobQueue, quotas: Quotas) -> None:
    tenant_id, request = task.tenant_id, task.request
    await reserve_quotas(
        ledger, tasks, tenant_id, task.task_id, pages=request.limit, quotas=quotas, now=task.created_at
    )
    try:
        # The record exists before the job does, so a GET right after the 202 never answers 404.
        await tasks.create(task)
    except BaseException:
        await ledger.release(tenant_id, task.task_id, used_pages=0)  # a task that never was holds nothing
        raise
    try:
        job = CrawlJob(tenant_id=tenant_id, task_id=task.task_id, request_id=tracing.request_id())
        await jobs.send(job.model_dump(mode="json", exclude_none=True))
    except Exception as exc:
        log.exception("enqueue failed", extra={"task_id": task.task_id, "tenant_id": tenant_id})
        task.status = TaskStatus.FAILED
        task.finished_at = utcnow()
        task.error = TaskError(code="enqueue_failed", message="the job queue did not accept the task")
        try:
            await _abandon(task, tasks, ledger)
        except StorageError:
            # The storage failed under both writes (a disk filling up between them): left as it is, the task
            # would stay `queued` with no job, holding its quota place, for good. Keep trying in the background.
            _abandon_later(task, tasks, ledger)
        raise ServiceUnavailable("the job queue is unavailable; retry later", headers={"Retry-After": "5"}) from exc
    log.debug("task queued", extra={"task_id": task.task_id, "tenant_id": tenant_id})
    telemetry.recorder().task_submitted(tenant_id)


async def _abandon(task: Task, tasks: TaskStore, ledger: QuotaLedger) -> None:
    await tasks.save(task)
    await ledger.release(task.tenant_id, task.task_id, used_pages=0)


#: Background retries of `_abandon` in this process (referenced here, so none is collected while it runs).
_RETRYING: set[asyncio.Task[None]] = set()
ABANDON_RETRY_FOR_S = 3600.0


def _abandon_later(task: Task, tasks: TaskStore, ledger: QuotaLedger) -> None:
    async def attempts() -> None:
        deadline = time.monotonic() + ABANDON_RETRY_FOR_S
        for attempt in itertools.count(1):
            await asyncio.sleep(backoff_s(attempt, base_s=1.0, max_s=30.0))
            try:
                await _abandon(task, tasks, ledger)
            except StorageError:
                if time.monotonic() < deadline:
                    continue
                log.error("task %s could not be marked failed; it stays queued", task.task_id)
                return
            log.warning("task %s marked failed (enqueue_failed) after %d tries", task.task_id, attempt + 1)
            return

    retrying = asyncio.get_running_loop().create_task(attempts())
    _RETRYING.add(retrying)
    retrying.add_done_callback(_RETRYING.discard)


async def _reserve(
    tenant_id: str, idempotency_key: str, record: IdempotencyRecord, tasks: TaskStore, *, ttl_s: float
) -> Task | None:
    """None once `record` holds the key; else the task of the request that holds it (or 409/422)."""
    held = await tasks.reserve_idempotency(tenant_id, idempotency_key, record, ttl_s=ttl_s)
    if held is None:
        return None
    if held.request_hash != record.request_hash:
        raise IdempotencyMismatch("this Idempotency-Key was used with a different request body")
    task = await tasks.get(tenant_id, held.task_id)
    if task is not None:
        return task
    abandoned = record.reserved_at - held.reserved_at > ABANDONED_AFTER_S
    if abandoned and await tasks.take_over_idempotency(tenant_id, idempotency_key, held, record, ttl_s=ttl_s):
        return None
    raise IdempotencyKeyInUse(
        "a request with this Idempotency-Key is still being processed; retry to get its answer",
        headers={"Retry-After": str(IN_USE_RETRY_AFTER_S)},
    )

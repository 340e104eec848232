"""Tenant quotas, checked when a task is submitted: tasks queued or running at once, and pages per UTC day.

Both are counted from keys written once each, never from a counter (KV takes one write per second per key
and has no compare-and-set): concurrency is one `list` of the tenant's `active` markers (written with the
task, removed when it ends), pages per day a `list` of today's task index keys, whose metadata carries each
task's `limit`, back to the day's latest checkpoint of their sum (`TaskStore.pages_reserved_since`). Two submits
at the same moment may both pass; README "Limits and quotas" bounds the overshoot.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.errors import QuotaExceeded
from shared.models import TERMINAL
from shared.settings import Settings
from shared.taskstore import TaskStore
from shared.tenants import Tenant

log = logging.getLogger(__name__)

#: A full concurrency quota frees up when a task ends: worth asking again soon.
CONCURRENCY_RETRY_AFTER_S = 10
#: At the concurrency limit, at most this many markers are checked against their task's status per submit.
MAX_MARKER_CHECKS = 100


@dataclass(frozen=True)
class Quotas:
    """A tenant's quotas (0: none) and how long a new task index key may take to be listed everywhere."""

    max_concurrent_tasks: int
    max_pages_per_day: int
    settle_s: float = 0.0

    @classmethod
    def of(cls, tenant: Tenant, settings: Settings) -> Quotas:
        """The tenant's own quotas where set, else the service's defaults."""
        own = tenant.limits
        concurrent, pages = own.max_concurrent_tasks, own.max_pages_per_day
        return cls(
            max_concurrent_tasks=settings.max_concurrent_tasks if concurrent is None else concurrent,
            max_pages_per_day=settings.max_pages_per_day if pages is None else pages,
            settle_s=settings.quota_settle_s,
        )


def day_start(now: datetime) -> datetime:
    """The start of `now`'s UTC day (`now` is timezone-aware)."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def seconds_to_next_day(now: datetime) -> int:
    """Whole seconds until the next UTC midnight, at least 1: when a pages-per-day quota starts afresh."""
    return max(1, math.ceil((day_start(now) + timedelta(days=1) - now).total_seconds()))


async def check_quotas(tasks: TaskStore, tenant_id: str, *, pages: int, quotas: Quotas, now: datetime) -> None:
    """Raise `QuotaExceeded` unless a new task of `pages` fits the tenant's quotas now."""
    if quotas.max_pages_per_day:
        await _check_pages_per_day(tasks, tenant_id, pages=pages, quotas=quotas, now=now)
    if quotas.max_concurrent_tasks:
        await _check_concurrency(tasks, tenant_id, allowance=quotas.max_concurrent_tasks)


async def _check_pages_per_day(tasks: TaskStore, tenant_id: str, *, pages: int, quotas: Quotas, now: datetime) -> None:
    allowance = quotas.max_pages_per_day
    if pages > allowance:
        raise QuotaExceeded(
            f"limit {pages} exceeds the tenant's {allowance} pages per day: no retry can pass",
            quota="pages_per_day",
            limit=allowance,
            requested=pages,
            status=422,
        )
    day_ms = int(day_start(now).timestamp() * 1000)
    settled_ms = int((now.timestamp() - quotas.settle_s) * 1000)
    used = await tasks.pages_reserved_since(tenant_id, day_ms, stop_above=allowance - pages, settled_ms=settled_ms)
    if used + pages > allowance:
        retry_s = seconds_to_next_day(now)
        log.info("pages per day exhausted", extra={"tenant_id": tenant_id, "used": used, "requested": pages})
        raise QuotaExceeded(
            f"{used} of the tenant's {allowance} pages per day are reserved and this task needs {pages}; "
            f"the quota starts afresh at 00:00 UTC, in {retry_s} s",
            quota="pages_per_day",
            limit=allowance,
            used=used,
            requested=pages,
            headers={"Retry-After": str(retry_s)},
        )


async def _check_concurrency(tasks: TaskStore, tenant_id: str, *, allowance: int) -> None:
    marked = await tasks.active_task_ids(tenant_id, limit=allowance)
    if len(marked) < allowance:
        return
    # At the limit: first drop markers whose task has ended but whose removal was lost (a crash after the
    # final save). A record not visible yet (KV propagation) still counts.
    active = len(marked) - min(len(marked), MAX_MARKER_CHECKS)
    for task_id in marked[:MAX_MARKER_CHECKS]:
        task = await tasks.get(tenant_id, task_id)
        if task is not None and task.status in TERMINAL:
            await tasks.mark_ended(tenant_id, task_id)
        else:
            active += 1
    if active >= allowance:
        log.info("concurrent tasks exhausted", extra={"tenant_id": tenant_id, "active": active})
        raise QuotaExceeded(
            f"the tenant has {active} tasks queued or running, its limit; retry when one has ended",
            headers={"Retry-After": str(CONCURRENCY_RETRY_AFTER_S)},
            quota="concurrent_tasks",
            limit=allowance,
            used=active,
        )

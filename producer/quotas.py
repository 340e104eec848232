"""The quota check of a submit: the tenant's ledger reserves a place for the task, or the answer is a problem
(429 `quota_exceeded` with `Retry-After`, or 422 for a task no retry can fit). The counting: `shared.stores.quotas`."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from shared.errors import QuotaExceeded
from shared.stores.quotas import PAGES_PER_DAY, QuotaLedger, Quotas, TaskLookup, day_start

log = logging.getLogger(__name__)

#: A full concurrency quota frees up when a task ends: worth asking again soon.
CONCURRENCY_RETRY_AFTER_S = 10


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

"""Per-tenant usage counters by UTC hour (`UsageLedger`), the report `GET /usage` and `scrapeq usage` show, and
the exact in-process `MemoryUsageLedger`; standard library only (the Cloudflare adapters import it)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.errors import StorageError

log = logging.getLogger(__name__)

TASKS_SUBMITTED = "tasks_submitted"
TASKS_COMPLETED = "tasks_completed"
TASKS_FAILED = "tasks_failed"
TASKS_CANCELLED = "tasks_cancelled"
PAGES_STORED = "pages_stored"
PAGES_FAILED = "pages_failed"
PAGES_SKIPPED = "pages_skipped"
BYTES_FETCHED = "bytes_fetched"
WEBHOOKS_DELIVERED = "webhooks_delivered"
WEBHOOKS_FAILED = "webhooks_failed"
#: Every plain counter, in the order a bucket shows them; page error codes are counted as `error:{code}`.
COUNTERS = (
    TASKS_SUBMITTED,
    TASKS_COMPLETED,
    TASKS_FAILED,
    TASKS_CANCELLED,
    PAGES_STORED,
    PAGES_FAILED,
    PAGES_SKIPPED,
    BYTES_FETCHED,
    WEBHOOKS_DELIVERED,
    WEBHOOKS_FAILED,
)
ERROR_PREFIX = "error:"
#: A terminal task status (its value) → the counter of tasks that ended so.
TASK_ENDED = {"completed": TASKS_COMPLETED, "failed": TASKS_FAILED, "cancelled": TASKS_CANCELLED}
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
GRANULARITIES = {"hour": HOUR, "day": DAY}
#: A report holds at most this many buckets.
MAX_BUCKETS = 1000
#: The instants a report may name (far from `datetime`'s own bounds, which arithmetic would overflow).
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

Counts = dict[str, int]


def error_counter(code: str) -> str:
    return ERROR_PREFIX + code


def hour_start(at: datetime) -> datetime:
    """The start of `at`'s UTC hour (a naive `at` is taken as UTC)."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def floor_to(at: datetime, granularity: str) -> datetime:
    start = hour_start(at)
    return start.replace(hour=0) if granularity == "day" else start


class UsageLedger(Protocol):
    """Where a backend counts usage (`Backends.usage`): exact counters in SQLite and in memory, sharded
    write-once-a-second keys over Workers KV (`shared.stores.usage_shards`)."""

    async def add(self, tenant_id: str, counts: Mapping[str, int], *, at: datetime) -> None:
        """Add `counts` (counter name → increment) to the tenant's hour of `at`."""
        ...

    async def hours(self, tenant_id: str, start: datetime, end: datetime) -> dict[datetime, Counts]:
        """The tenant's counts of each hour (its UTC start) from `start`'s hour until before `end`; hours with
        nothing counted may be absent."""
        ...


async def record(
    ledger: UsageLedger | None, tenant_id: str, counts: Mapping[str, int], *, at: datetime | None = None
) -> None:
    """Count usage without ever failing the work it describes: a storage failure is logged and the counts lost."""
    nonzero = {name: value for name, value in counts.items() if value}
    if ledger is None or not nonzero:
        return
    try:
        await ledger.add(tenant_id, nonzero, at=at or datetime.now(UTC))
    except StorageError as exc:
        log.warning("usage not counted: %s", exc, extra={"tenant_id": tenant_id, "usage": nonzero})


class MemoryUsageLedger:
    """Counters in a dict: exact, as nothing awaits between reading and writing one."""

    def __init__(self) -> None:
        self._hours: dict[tuple[str, datetime], Counter[str]] = {}

    async def add(self, tenant_id: str, counts: Mapping[str, int], *, at: datetime) -> None:
        self._hours.setdefault((tenant_id, hour_start(at)), Counter()).update(counts)

    async def hours(self, tenant_id: str, start: datetime, end: datetime) -> dict[datetime, Counts]:
        first = hour_start(start)
        return {
            hour: dict(counts)
            for (tenant, hour), counts in self._hours.items()
            if tenant == tenant_id and first <= hour < end
        }


class RangeError(ValueError):
    """A report's range that cannot be served; `field` names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def report_range(
    start: datetime | None, end: datetime | None, granularity: str, *, now: datetime
) -> tuple[datetime, datetime]:
    """The report's `from` (floored to the granularity) and `to`, with the defaults: `to` now, `from` 7 days
    (day) or 24 hours (hour) before it. RangeError if empty, reversed, or over `MAX_BUCKETS` buckets."""
    if granularity not in GRANULARITIES:
        raise RangeError("granularity", f"granularity must be one of {', '.join(GRANULARITIES)}")
    for name, value in (("to", end), ("from", start)):
        if value is not None and not _within(value):
            raise RangeError(name, f"{name} must be within {EARLIEST.year}..{LATEST.year - 1}")
    end = _utc(end or now).replace(microsecond=0)
    start = _utc(start) if start is not None else end - (7 * DAY if granularity == "day" else DAY)
    first = floor_to(start, granularity)
    if first >= end:
        raise RangeError("from", "from must be before to")
    step = GRANULARITIES[granularity]
    buckets = -(-(end - first) // step)
    if buckets > MAX_BUCKETS:
        raise RangeError("from", f"the range holds {buckets} {granularity} buckets, more than {MAX_BUCKETS}")
    return first, end


def _within(at: datetime) -> bool:
    try:
        return EARLIEST <= _utc(at) < LATEST
    except OverflowError:  # an offset that moves it past datetime's own bounds
        return False


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def figures(counts: Mapping[str, int]) -> dict[str, Any]:
    """A bucket's fields (without `start`): every counter, zero included, and the page errors by code."""
    errors = {name[len(ERROR_PREFIX) :]: value for name, value in counts.items() if name.startswith(ERROR_PREFIX)}
    view: dict[str, Any] = {name: int(counts.get(name, 0)) for name in COUNTERS}
    view["errors"] = dict(sorted(errors.items()))
    return view


async def usage_report(
    ledger: UsageLedger, tenant_id: str, *, start: datetime, end: datetime, granularity: str
) -> dict[str, Any]:
    """The `GET /usage` answer: contiguous buckets from `start` (already floored, see `report_range`) until
    `end`, each summed from the stored hours (days are UTC days), and their totals."""
    hours = await ledger.hours(tenant_id, start, end)
    step = GRANULARITIES[granularity]
    sums: dict[datetime, Counter[str]] = {}
    at = start
    while at < end:
        sums[at] = Counter()
        at += step
    totals: Counter[str] = Counter()
    for hour, counts in hours.items():
        bucket = sums.get(floor_to(hour, granularity))
        if bucket is not None and hour < end:
            bucket.update(counts)
            totals.update(counts)
    return {
        "tenant_id": tenant_id,
        "from": iso(start),
        "to": iso(end),
        "granularity": granularity,
        "buckets": [{"start": iso(at), **figures(counts)} for at, counts in sums.items()],
        "totals": figures(totals),
    }

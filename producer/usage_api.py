"""`GET /usage`: the caller's tenant's usage by UTC hour or day (tasks, pages, bytes, webhooks, page errors)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from producer.deps import BackendsDep, PrincipalDep
from producer.problems import problem_responses
from producer.routes import AUTHENTICATED
from shared.stores.usage import RangeError, report_range, usage_report


class UsageFigures(BaseModel):
    """What the tenant's tasks did in a period."""

    tasks_submitted: int
    tasks_completed: int
    tasks_failed: int
    tasks_cancelled: int
    #: Pages stored with content, stored with an error, skipped (robots.txt, a redirect onto a page already had).
    pages_stored: int
    pages_failed: int
    pages_skipped: int
    #: Page body bytes received (after decompression).
    bytes_fetched: int
    #: Webhook deliveries (not attempts) that succeeded, or gave up after their last attempt.
    webhooks_delivered: int
    webhooks_failed: int
    #: Failed pages by error code (see the README's page error codes).
    errors: dict[str, int]


class UsageBucket(UsageFigures):
    start: str = Field(description="the bucket's first instant, UTC (ISO 8601)")


class UsageReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    tenant_id: str
    from_: str = Field(alias="from", description="`from` floored to the granularity, UTC")
    to: str
    granularity: Literal["hour", "day"]
    buckets: list[UsageBucket]
    totals: UsageFigures


router = APIRouter(tags=["usage"])

FromQuery = Annotated[
    datetime | None, Query(alias="from", description="ISO 8601; default: `to` − 7 days (day) or − 24 hours (hour)")
]
ToQuery = Annotated[datetime | None, Query(description="ISO 8601 (UTC without an offset); default: now")]


@router.get(
    "/usage",
    response_model=UsageReport,
    response_model_by_alias=True,
    responses=problem_responses(*AUTHENTICATED),
)
async def get_usage(
    principal: PrincipalDep,
    backends: BackendsDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    granularity: Literal["hour", "day"] = "day",
) -> UsageReport:
    """The caller's tenant's usage in contiguous buckets (empty ones included) from `from` floored to the
    granularity until `to`, days summed from hours (UTC), with their totals; at most 1000 buckets (else 422)."""
    try:
        start, end = report_range(from_, to, granularity, now=datetime.now(UTC))
    except RangeError as exc:
        loc = ("query", "from" if exc.field == "from" else exc.field)
        raise RequestValidationError([{"loc": loc, "msg": str(exc), "type": "value_error"}]) from None
    report = await usage_report(backends.usage, principal.tenant_id, start=start, end=end, granularity=granularity)
    return UsageReport.model_validate(report)

"""Event feeds and webhooks: `GET /events`, `GET /tasks/{id}/events`, redelivery, test events, delivery state;
the feeds carry the webhooks' own event ids, so `?after=<last id>` catches up on missed deliveries.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, field_validator

from producer.deps import EventsDep, PrincipalDep, SettingsDep, TasksDep
from producer.problems import problem_responses
from producer.routes import AUTHENTICATED, TASK_ROUTE, TaskIdPath, load_task
from shared import urls
from shared.errors import BlockedAddress, InvalidInput, NotFound, UrlNotAllowed
from shared.guard import AddressPolicy, check_host
from shared.models import Delivery, DeliveryStatus
from shared.stores.events import LIFECYCLE_KINDS, EventLog, task_event_id

router = APIRouter(tags=["events and webhooks"])

AfterQuery = Annotated[str | None, Query(max_length=100, description="the id of the last event you have")]
FeedLimit = Annotated[int, Query(ge=1, le=1000)]
WaitQuery = Annotated[
    float,
    Query(ge=0, le=30, description="long poll: hold the answer up to this many seconds until an event comes"),
]
#: How often a long poll looks for new events.
LONG_POLL_STEP_S = 0.25


async def _feed(
    events: EventLog, tenant_id: str, *, task_id: str | None, after: str | None, limit: int, wait: float
) -> EventList:
    """The events after `after`; with `wait`, the answer waits until there is one (or `wait` has passed)."""
    deadline = time.monotonic() + wait
    while True:
        found, next_after = await events.feed(tenant_id, task_id=task_id, after=after, limit=limit)
        left = deadline - time.monotonic()
        if found or left <= 0:
            return EventList(events=found, next_after=next_after)
        await asyncio.sleep(min(LONG_POLL_STEP_S, left))


class EventList(BaseModel):
    events: list[dict[str, Any]]
    #: Pass as `after` for the next page; null when there is nothing more right now.
    next_after: str | None


class TestRequest(BaseModel):
    url: str

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return urls.validate_submitted_url(value)


@router.get("/events", response_model=EventList, responses=problem_responses(*AUTHENTICATED))
async def tenant_events(
    principal: PrincipalDep,
    events: EventsDep,
    settings: SettingsDep,
    after: AfterQuery = None,
    limit: FeedLimit = 100,
    wait: WaitQuery = 0,
) -> EventList:
    """Every event of the tenant's tasks, oldest first."""
    wait = min(wait, settings.feed_max_wait_s)
    return await _feed(events, principal.tenant_id, task_id=None, after=after, limit=limit, wait=wait)


@router.get("/tasks/{task_id}/events", response_model=EventList, responses=TASK_ROUTE)
async def task_events(
    task_id: TaskIdPath,
    principal: PrincipalDep,
    tasks: TasksDep,
    events: EventsDep,
    settings: SettingsDep,
    after: AfterQuery = None,
    limit: FeedLimit = 100,
    wait: WaitQuery = 0,
) -> EventList:
    """The task's events, oldest first."""
    task = await load_task(tasks, principal, task_id)
    wait = min(wait, settings.feed_max_wait_s)
    return await _feed(events, principal.tenant_id, task_id=task.task_id, after=after, limit=limit, wait=wait)


@router.post("/tasks/{task_id}/webhook/redeliver", status_code=202, responses=TASK_ROUTE)
async def redeliver(
    task_id: TaskIdPath,
    principal: PrincipalDep,
    tasks: TasksDep,
    events: EventsDep,
    event_id: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, list[str]]:
    """Send the task's events again: the one named, or every lifecycle event whose delivery failed."""
    task = await load_task(tasks, principal, task_id)
    webhook = task.request.webhook
    if webhook is None:
        raise InvalidInput("this task has no webhook")
    wanted = [event_id] if event_id else [task_event_id(task.task_id, kind) for kind in LIFECYCLE_KINDS]
    queued = []
    for wanted_id in wanted:
        event = await events.get(principal.tenant_id, wanted_id)
        if event is None or event.task_id != task.task_id:
            if event_id:
                raise NotFound(f"no event {event_id!r} for this task")
            continue
        delivery = await events.delivery(principal.tenant_id, wanted_id)
        if event_id or (delivery is not None and delivery.status is DeliveryStatus.FAILED):
            await events.queue_delivery(event, webhook.url, again=True)
            queued.append(wanted_id)
    return {"redelivered": queued}


@router.post("/webhooks/test", status_code=202, responses=problem_responses(*AUTHENTICATED, 400, 413))
async def send_test(
    body: TestRequest, principal: PrincipalDep, events: EventsDep, settings: SettingsDep
) -> JSONResponse:
    """Send a signed `webhook.test` event to `url`; follow its delivery at `delivery_url`."""
    try:
        check_host(urls.host_of(body.url), AddressPolicy(settings.allow_private_networks))
    except BlockedAddress as exc:
        raise UrlNotAllowed(str(exc)) from None
    event = await events.record_test(principal.tenant_id, body.url)
    delivery_url = f"/webhooks/deliveries/{event.id}"
    return JSONResponse({"event_id": event.id, "delivery_url": delivery_url}, status_code=202)


@router.get("/webhooks/deliveries/{event_id}", response_model=Delivery, responses=TASK_ROUTE)
async def delivery_state(
    event_id: Annotated[str, Path(max_length=100)], principal: PrincipalDep, events: EventsDep
) -> Delivery:
    """Attempts, last status, next attempt and delivery time of one event's webhook."""
    delivery = await events.delivery(principal.tenant_id, event_id)
    if delivery is None:
        raise NotFound(f"no delivery {event_id!r}")
    return delivery

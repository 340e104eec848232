"""Task events: one record per event, in a tenant feed and a task feed, and the webhook delivery of each."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from shared import keys, tracing
from shared.models import Delivery, EventType, Task, TaskPublic, utcnow
from shared.ports import JobQueue, KeyValueStore
from shared.stores.tasks import paginate

#: Event types a webhook may subscribe to, plus the one `POST /webhooks/test` sends.
TEST_EVENT = "webhook.test"
TERMINAL_EVENTS = frozenset({EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED})
#: The `kind`s of a task's lifecycle events (page events are `page-{seq}`).
LIFECYCLE_KINDS = ("started", "terminal")


class Event(BaseModel):
    """One event; `payload` is the exact webhook body, signed and sent byte for byte on every attempt."""

    id: str
    type: str
    timestamp: datetime
    tenant_id: str
    task_id: str | None = None
    payload: str
    #: Where the event sits in the feeds (emission time in ns, then id); set when it is recorded.
    feed_key: str = ""

    def public(self) -> dict[str, Any]:
        """The event as the feeds serve it: the webhook body plus its id."""
        return {"id": self.id, **json.loads(self.payload)}


class WebhookJob(BaseModel):
    """Queue message: attempt number `attempt` of delivering one event; `request_id` is that of the request (or
    of the crawl's submit) that queued it, for the delivery's log lines."""

    kind: str = Field(default="webhook", pattern="^webhook$")
    tenant_id: str
    event_id: str
    attempt: int = 1
    request_id: str | None = None


def task_event_id(task_id: str, kind: str) -> str:
    """The stable id of a task's event: `kind` is `started`, `terminal` or `page-{seq}`."""
    digest = hashlib.sha256(f"{task_id}:{kind}".encode()).hexdigest()[:32]
    return f"msg_{digest}"


def new_event_id() -> str:
    return f"msg_{secrets.token_hex(16)}"


def payload(event_type: str, at: datetime, data: dict[str, Any]) -> str:
    return json.dumps(
        {"type": event_type, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def task_data(task: Task, **extra: Any) -> dict[str, Any]:
    public: TaskPublic = task.public()
    return {**public.model_dump(mode="json"), **extra}


class EventLog:
    """Records events and queues their deliveries; every call is safe to repeat.

    An event's id is its `webhook-id`, the same in the feeds and in every delivery attempt. Ids of task events are
    derived from (task, kind), so an event emitted again by a redelivered message is the same event: it is
    recorded once and delivered once. All terminal events of a task share one id, so a task has exactly one.
    """

    def __init__(self, kv: KeyValueStore, jobs: JobQueue, *, retention_s: float) -> None:
        self.kv = kv
        self.jobs = jobs
        self.retention_s = retention_s
        self._last_ns = 0

    async def emit(self, task: Task, event_type: EventType, *, kind: str, **extra: Any) -> Event:
        """Record the task's event `kind` once (a repeat returns the first record) and queue its webhook."""
        event_id = task_event_id(task.task_id, kind)
        event = await self.get(task.tenant_id, event_id)
        if event is None:
            at = utcnow()
            data = task_data(task, **extra)
            event = Event(
                id=event_id,
                type=event_type,
                timestamp=at,
                tenant_id=task.tenant_id,
                task_id=task.task_id,
                payload=payload(event_type, at, data),
            )
            await self._record(event)
        webhook = task.request.webhook
        if webhook is not None and EventType(event.type) in webhook.events:
            await self.queue_delivery(event, webhook.url)
        return event

    async def record_test(self, tenant_id: str, url: str) -> Event:
        """A `webhook.test` event for `url`, delivered like any other (not part of the feeds)."""
        at = utcnow()
        data = {"message": "a test event from scrapeq", "url": url}
        event = Event(
            id=new_event_id(),
            type=TEST_EVENT,
            timestamp=at,
            tenant_id=tenant_id,
            payload=payload(TEST_EVENT, at, data),
        )
        await self.kv.put(keys.event(tenant_id, event.id), event.model_dump_json(), ttl_s=self.retention_s)
        await self.queue_delivery(event, url)
        return event

    async def queue_delivery(self, event: Event, url: str, *, again: bool = False) -> Delivery:
        """Queue the first attempt, unless one was queued already (or `again`: a manual redelivery)."""
        delivery = await self.delivery(event.tenant_id, event.id)
        if delivery is not None and not again:
            return delivery
        delivery = Delivery(event_id=event.id, type=event.type, url=url)
        await self.save_delivery(event.tenant_id, delivery)
        job = WebhookJob(tenant_id=event.tenant_id, event_id=event.id, request_id=tracing.request_id())
        await self.jobs.send(job.model_dump(mode="json", exclude_none=True))
        return delivery

    async def get(self, tenant_id: str, event_id: str) -> Event | None:
        raw = await self.kv.get(keys.event(tenant_id, event_id))
        return Event.model_validate_json(raw) if raw else None

    async def delivery(self, tenant_id: str, event_id: str) -> Delivery | None:
        raw = await self.kv.get(keys.delivery(tenant_id, event_id))
        return Delivery.model_validate_json(raw) if raw else None

    async def task_deliveries(self, tenant_id: str, task_id: str) -> list[Delivery]:
        """The delivery records of a task's lifecycle events, in order (page events are not listed)."""
        found = [await self.delivery(tenant_id, task_event_id(task_id, kind)) for kind in LIFECYCLE_KINDS]
        return [d for d in found if d is not None]

    async def save_delivery(self, tenant_id: str, delivery: Delivery) -> None:
        await self.kv.put(
            keys.delivery(tenant_id, delivery.event_id), delivery.model_dump_json(), ttl_s=self.retention_s
        )

    async def feed(
        self, tenant_id: str, *, task_id: str | None, after: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Events in the order they happened, those after event `after` (its id) when given."""
        prefix = keys.task_events_prefix(tenant_id, task_id) if task_id else keys.events_prefix(tenant_id)
        start = None
        if after:
            anchor = await self.get(tenant_id, after)
            if anchor is None or (task_id is not None and anchor.task_id != task_id):
                return [], None
            start = prefix + anchor.feed_key

        async def load(key: str) -> dict[str, Any] | None:
            raw = await self.kv.get(key)
            return Event.model_validate_json(raw).public() if raw else None

        events, _ = await paginate(self.kv, prefix, load, cursor=None, limit=limit, after_key=start)
        last = events[-1]["id"] if len(events) == limit else None
        return events, last

    async def _record(self, event: Event) -> None:
        # Feed keys sort by emission time; nanoseconds (kept increasing) order a burst of page events too.
        at_ns = max(time.time_ns(), self._last_ns + 1)
        self._last_ns = at_ns
        event.feed_key = f"{at_ns:019d}:{event.id}"
        raw = event.model_dump_json()
        ttl = self.retention_s
        await self.kv.put(keys.event(event.tenant_id, event.id), raw, ttl_s=ttl)
        await self.kv.put(keys.events_prefix(event.tenant_id) + event.feed_key, raw, ttl_s=ttl)
        if event.task_id:
            await self.kv.put(keys.task_events_prefix(event.tenant_id, event.task_id) + event.feed_key, raw, ttl_s=ttl)

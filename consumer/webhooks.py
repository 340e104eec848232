"""Webhook delivery: one attempt per queue message, signed per Standard Webhooks, retried with backoff."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import ValidationError

from consumer.fetch.addresses import AddressRefused
from shared import signing, telemetry, tracing
from shared.models import Delivery, DeliveryStatus, utcnow
from shared.ports import Clock, JobQueue, JsonObject
from shared.retry import retry_after_s, webhook_delay_s
from shared.settings import Settings
from shared.stores.accounts import Accounts
from shared.stores.events import Event, EventLog, WebhookJob
from shared.stores.usage import WEBHOOKS_DELIVERED, WEBHOOKS_FAILED, UsageLedger, record

log = logging.getLogger(__name__)

#: The receiver's answer is not used; reading a little of it lets the connection be reused.
MAX_RESPONSE_BYTES = 4096
GONE = 410


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    """Sends one delivery attempt and schedules the next one when it fails.

    Each attempt is its own message (`WebhookJob.attempt`), so a delivery can outlast the queue's `max_retries`
    and wait hours between attempts (capped at Cloudflare's 12 h delay). The outcome of every attempt is written
    to the event's `Delivery` record, which the task view and `/webhooks/deliveries/{id}` show.
    """

    def __init__(
        self,
        *,
        events: EventLog,
        accounts: Accounts,
        client: httpx.AsyncClient,
        jobs: JobQueue,
        settings: Settings,
        clock: Clock,
        usage: UsageLedger | None = None,
    ) -> None:
        self.usage = usage
        self.events = events
        self.accounts = accounts
        self.client = client
        self.jobs = jobs
        self.settings = settings
        self.clock = clock

    async def handle(self, body: JsonObject) -> None:
        try:
            job = WebhookJob.model_validate(body)
        except ValidationError:
            log.error("dropping a malformed webhook job: %.200r", body)
            return
        event = await self.events.get(job.tenant_id, job.event_id)
        delivery = await self.events.delivery(job.tenant_id, job.event_id)
        if event is None or delivery is None or delivery.status is not DeliveryStatus.PENDING:
            return  # expired, unknown, or already settled by an earlier copy of this job
        tracing.note(task_id=event.task_id)  # the delivery's log lines name the event's task
        if job.attempt <= delivery.attempts:
            return  # a duplicate of an attempt that already ran
        tenant = await self.accounts.get_tenant(job.tenant_id)
        if tenant is None:
            return
        secrets = tenant.signing_secrets(datetime.fromtimestamp(self.clock(), UTC))
        attempt = await self._post(delivery.url, event, secrets)
        await self._record(job, delivery, attempt)

    async def _post(self, url: str, event: Event, secrets: list[str]) -> Attempt:
        body = event.payload.encode()
        headers = signing.headers_for(secrets, event.id, int(self.clock()), body)
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                async with self.client.stream("POST", url, content=body, headers=headers) as response:
                    await _drain(response)
        except TimeoutError:
            return Attempt(None, f"no answer within {self.settings.webhook_timeout_s:g} s")
        except (httpx.HTTPError, AddressRefused) as exc:  # a transport may raise the guard's refusal unwrapped
            return Attempt(None, _describe(exc))
        retry_after = retry_after_s(response.headers.get("retry-after"), now=self.clock())
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return Attempt(response.status_code, error, retry_after)

    async def _record(self, job: WebhookJob, delivery: Delivery, attempt: Attempt) -> None:
        delivery.attempts = job.attempt
        delivery.last_status = attempt.status_code
        delivery.last_error = attempt.error
        delivery.next_attempt_at = None
        last = job.attempt >= self.settings.webhook_max_attempts or attempt.status_code == GONE
        if attempt.ok:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = utcnow()
        elif last:
            delivery.status = DeliveryStatus.FAILED
        else:
            delay_s = webhook_delay_s(
                job.attempt, base_s=self.settings.webhook_backoff_s, retry_after_s=attempt.retry_after_s
            )
            delivery.next_attempt_at = utcnow() + timedelta(seconds=delay_s)
            # The next attempt is queued before the record says so: a crash in between leaves a pending
            # delivery that still has its next attempt, never one that waits forever.
            next_job = job.model_copy(update={"attempt": job.attempt + 1})
            await self.jobs.send(next_job.model_dump(mode="json", exclude_none=True), delay_s=delay_s)
        await self.events.save_delivery(job.tenant_id, delivery)
        # Per delivery, not per attempt: counted once it succeeds, or once it gives up (its last attempt, a 410).
        settled = {DeliveryStatus.DELIVERED: WEBHOOKS_DELIVERED, DeliveryStatus.FAILED: WEBHOOKS_FAILED}
        if delivery.status in settled:
            await record(self.usage, job.tenant_id, {settled[delivery.status]: 1})
        telemetry.recorder().webhook(job.tenant_id, telemetry.WEBHOOK_OUTCOME[delivery.status.value])
        log.info(
            "webhook %s attempt %d: %s",
            job.event_id,
            job.attempt,
            delivery.status.value if not attempt.error else attempt.error,
            extra={
                "tenant_id": job.tenant_id,
                "event_id": job.event_id,
                "event_type": delivery.type,
                "attempt": job.attempt,
                "delivery_status": delivery.status.value,
                "http_status": attempt.status_code,
            },
        )


async def _drain(response: httpx.Response) -> None:
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= MAX_RESPONSE_BYTES:
            return


def _describe(exc: Exception) -> str:
    cause: BaseException = exc
    while cause.__cause__ is not None and cause is not cause.__cause__:
        cause = cause.__cause__
    text = str(cause) or type(cause).__name__
    return text[:200]

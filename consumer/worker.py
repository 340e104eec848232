"""Cloudflare Worker entry of the consumer: queue batches in, through the same `JobHandler` as `scrapeq worker`."""

from __future__ import annotations

from typing import Any

from workers import DurableObject, WorkerEntrypoint  # type: ignore[import-not-found]

from consumer.fetch.client import build_client
from consumer.handler import JobHandler, make_handler
from shared import cron, logformat
from shared.backends import analytics
from shared.backends.cloudflare import cloudflare_backends, dispatch_batch, settings_from_env
from shared.backends.durable import CoordinationObject
from shared.ports import Message

_handler: JobHandler | None = None


def handler_for(env: Any) -> JobHandler:
    """The isolate's handler over the Worker's bindings and one HTTP client (built on the first batch)."""
    global _handler
    if _handler is None:
        from js import fetch  # type: ignore[import-not-found]

        settings = settings_from_env(env)
        logformat.install(settings.log_level, settings.log_format)  # console output becomes Workers Logs
        analytics.install_from_env(env)  # operator metrics as Analytics Engine data points, if bound
        _handler = make_handler(settings, cloudflare_backends(env), client=build_client(settings, js_fetch=fetch))
    return _handler


async def handle(handler: JobHandler, queue: str, message: Message) -> float | None:
    """One message: the seconds to wait before a retry, or None to ack."""
    if queue == handler.settings.dead_letter_queue:
        await handler.handle_dead_letter(message.body)
        return None
    decision = await handler.handle(message.body, message_id=message.id, attempts=message.attempts)
    return decision.retry_after_s


class Default(WorkerEntrypoint):  # type: ignore[misc]
    """Each message goes through the same `JobHandler` as `scrapeq worker`; `dispatch_batch` maps its decision to
    `message.ack()` or `message.retry(delaySeconds=...)`. Pages are fetched with JS `fetch` (redirect "manual")
    under the httpx API, so the network guard sees every hop and the User-Agent is sent.
    """

    async def queue(self, batch: Any) -> None:
        handler = handler_for(self.env)
        await dispatch_batch(batch, lambda queue, message: handle(handler, queue, message))

    async def scheduled(self, controller: Any, env: Any = None, ctx: Any = None) -> None:
        """A Cron Trigger (`[triggers] crons`): `shared.cron` runs the work of `controller.cron` (the daily backup)."""
        settings = handler_for(self.env).settings  # the handler installs the log format too
        await cron.run(controller, self.env, retention_days=settings.backup_retention_days)


class Coordination(DurableObject):  # type: ignore[misc]
    """The coordination Durable Object (binding `COORDINATION` in both Workers): one per host and one per tenant
    (`shared.coordination.RunnerCoordinator` names them); each RPC `call` is one operation of the port's core on
    the object's SQLite-backed storage (`shared.backends.durable`)."""

    def __init__(self, ctx: Any, env: Any) -> None:
        self.ctx = ctx
        self.env = env
        self.body = CoordinationObject(ctx.storage)

    async def call(self, op: str, payload: str) -> str:
        return await self.body.call(op, payload)

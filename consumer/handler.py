"""The consumer's entry for every queue message, a crawl slice or a webhook delivery attempt: the same
`JobHandler` runs in `scrapeq worker` and in the consumer Worker (`consumer.decision` says how it is applied).
"""

from __future__ import annotations

import time

import httpx

from consumer.crawl.hostgate import HostGate
from consumer.crawl.job import CrawlHandler
from consumer.crawl.robots import FetcherRobots, RobotsCache
from consumer.crawl.sharedgate import SharedHostGate
from consumer.crawl.slice import Shutdown
from consumer.crawl.visit import Visitor
from consumer.decision import ACK, Decision, retry
from consumer.fetch.fetcher import Fetcher
from consumer.webhooks import WebhookSender
from shared import tracing
from shared.backends.base import Backends
from shared.ports import Clock, JobQueue, JsonObject
from shared.settings import Settings
from shared.stores.accounts import Accounts
from shared.stores.events import EventLog
from shared.stores.tasks import TaskStore

__all__ = ["ACK", "Decision", "JobHandler", "make_handler", "retry"]


class JobHandler:
    """Routes a message by its `kind` to the crawl or to webhook delivery."""

    def __init__(self, *, crawls: CrawlHandler, webhooks: WebhookSender, settings: Settings) -> None:
        self.crawls = crawls
        self.webhooks = webhooks
        self.settings = settings

    async def handle(self, body: JsonObject, *, message_id: str, attempts: int) -> Decision:
        """Every log line of the message's work carries its request id, tenant and task (`message_trace`)."""
        with tracing.traced(message_trace(body)):
            if body.get("kind") == "webhook":
                # A delivery schedules its own next attempt as a new message: the queue's retries stay for crashes.
                await self.webhooks.handle(body)
                return ACK
            return await self.crawls.handle(body, message_id=message_id, attempts=attempts)

    async def handle_dead_letter(self, body: JsonObject) -> None:
        """A message that exhausted its retries: its task fails instead of waiting forever."""
        if body.get("kind") != "webhook":
            with tracing.traced(message_trace(body)):
                await self.crawls.handle_dead_letter(body)


def message_trace(body: JsonObject) -> tracing.Trace:
    """The trace a message carries: its request id, tenant and task (a webhook job names its task's event only;
    the delivery adds the task once it has read the event)."""

    def text(name: str) -> str | None:
        value = body.get(name)
        return value if isinstance(value, str) else None

    return tracing.Trace(request_id=text("request_id"), tenant_id=text("tenant_id"), task_id=text("task_id"))


def host_gate(settings: Settings, backends: Backends[JobQueue]) -> HostGate:
    """This process's own gate, or one shared through the backends' coordination port (`host_gate` setting)."""
    concurrency, least, most = settings.host_max_concurrency, settings.host_min_delay_s, settings.host_max_delay_s
    shared = settings.host_gate == "shared" or (settings.host_gate == "auto" and backends.name == "cloudflare")
    if not shared or backends.coordination is None:
        return HostGate(max_concurrency=concurrency, min_delay_s=least, max_delay_s=most)
    # A slot outlives the longest request it can cover (a page's budget) before it frees itself.
    lease_s = settings.page_budget_s + 30
    return SharedHostGate(
        backends.coordination, max_concurrency=concurrency, min_delay_s=least, max_delay_s=most, lease_s=lease_s
    )


def make_handler(
    settings: Settings,
    backends: Backends[JobQueue],
    *,
    client: httpx.AsyncClient,
    clock: Clock = time.time,
    shutdown: Shutdown | None = None,
) -> JobHandler:
    """The consumer's object graph over one shared HTTP client; the same locally and in the consumer Worker
    (which has no `shutdown`: the platform ends an invocation, not a process).

    One `HostGate` serves every visit and robots.txt fetch of every task and tenant in this process.
    """
    fetcher = Fetcher(client, settings=settings)
    gate = host_gate(settings, backends)
    robots = RobotsCache(FetcherRobots(fetcher, gate), ttl_s=settings.robots_cache_ttl_s, clock=clock)
    visitor = Visitor(
        fetcher=fetcher,
        robots=robots,
        gate=gate,
        max_links=settings.fetch_max_links_per_page,
        retries=settings.page_retries,
        budget_s=settings.page_budget_s,
        clock=clock,
    )
    kv, jobs = backends.kv, backends.jobs
    events = EventLog(kv, jobs, retention_s=settings.event_retention_s)
    crawls = CrawlHandler(
        store=TaskStore(kv),
        quotas=backends.quotas,
        jobs=jobs,
        events=events,
        visitor=visitor,
        settings=settings,
        clock=clock,
        shutdown=shutdown,
        usage=backends.usage,
    )
    webhooks = WebhookSender(
        events=events,
        accounts=Accounts(kv),
        client=client,
        jobs=jobs,
        settings=settings,
        clock=clock,
        usage=backends.usage,
    )
    return JobHandler(crawls=crawls, webhooks=webhooks, settings=settings)

"""Prometheus metrics of the local processes: the recorder they install, and `GET /metrics` on the API behind
`SCRAPEQ_METRICS_TOKEN`, summed over every process of the data dir (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from scrapeq import multiproc
from shared import telemetry
from shared.backends.base import QueueStats
from shared.errors import StorageError
from shared.settings import Settings

log = logging.getLogger(__name__)

PATH = "/metrics"
#: API latencies: a submit takes about a millisecond; a long-polled feed up to `SCRAPEQ_FEED_MAX_WAIT_S`.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: A slice runs up to `SCRAPEQ_SLICE_MAX_S` (60) plus its pages in flight.
SLICE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class PrometheusRecorder:
    """`telemetry.Recorder` over prometheus-client metrics, registered nowhere: in multiprocess mode each value
    lives in this process's file under the metrics directory, and `/metrics` reads all the files."""

    def __init__(self) -> None:
        self.requests = Counter("scrapeq_http_requests", "API answers", ["route", "method", "status"], registry=None)
        self.latency = Histogram(
            "scrapeq_http_request_duration_seconds",
            "API answer time, first byte in to last byte out",
            ["route", "method"],
            buckets=REQUEST_BUCKETS,
            registry=None,
        )
        self.pages = Counter("scrapeq_pages", "pages committed by outcome", ["outcome"], registry=None)
        self.page_errors = Counter("scrapeq_page_errors", "failed pages by error code", ["code"], registry=None)
        self.fetched_bytes = Counter("scrapeq_fetched_bytes", "body bytes read (decompressed)", registry=None)
        self.submitted = Counter("scrapeq_tasks_submitted", "tasks stored and enqueued", registry=None)
        self.finished = Counter("scrapeq_tasks_finished", "tasks ended, by final status", ["status"], registry=None)
        self.webhooks = Counter(
            "scrapeq_webhook_attempts", "webhook delivery attempts by outcome", ["outcome"], registry=None
        )
        self.slices = Histogram(
            "scrapeq_slice_duration_seconds", "crawl slice wall time", buckets=SLICE_BUCKETS, registry=None
        )
        # labels() takes a lock and builds a key on every call: the request path keeps its children.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        children = self._request_children.get((route, method, status))
        if children is None:
            children = self.requests.labels(route, method, str(status)), self.latency.labels(route, method)
            self._request_children[(route, method, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def page(self, tenant_id: str, outcome: str, code: str | None) -> None:
        self.pages.labels(outcome).inc()
        if code is not None:
            self.page_errors.labels(code).inc()

    def fetched(self, nbytes: int) -> None:
        if nbytes > 0:
            self.fetched_bytes.inc(nbytes)

    def task_submitted(self, tenant_id: str) -> None:
        self.submitted.inc()

    def task_finished(self, tenant_id: str, status: str) -> None:
        self.finished.labels(status).inc()

    def webhook(self, tenant_id: str, outcome: str) -> None:
        self.webhooks.labels(outcome).inc()

    def slice_ran(self, tenant_id: str, seconds: float) -> None:
        self.slices.observe(seconds)


def install(settings: Settings) -> PrometheusRecorder:
    """Make this process record into `<data dir>/metrics/` (see `multiproc.prepare`) and install the recorder.

    prometheus-client picks its value class when it is imported, from `PROMETHEUS_MULTIPROC_DIR`; it is picked
    again here, after the directory is set, so the order of imports does not matter (the metrics are made after).
    """
    multiproc.prepare(settings)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    recorder = PrometheusRecorder()
    telemetry.install(recorder)
    return recorder


class CountedQueue(Protocol):
    async def stats(self) -> QueueStats: ...

    async def size(self) -> int: ...


class QueueDepth(Collector):
    """The queue's gauges, read from the SQLite queue when `/metrics` is scraped (not counted as things happen,
    so they are right whatever process moved the messages)."""

    def __init__(self, jobs: QueueStats, dead_letters: int | None) -> None:
        self.jobs = jobs
        self.dead_letters = dead_letters

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("scrapeq_queue_messages", "job queue messages by state", labels=["state"])
        for state in ("visible", "leased", "delayed"):
            depth.add_metric([state], getattr(self.jobs, state))
        yield depth
        if self.dead_letters is not None:
            yield GaugeMetricFamily(
                "scrapeq_dead_letter_messages", "messages in the dead-letter queue", self.dead_letters
            )


async def render(jobs: CountedQueue, dead_letters: CountedQueue | None) -> bytes:
    """The text exposition of every process's metrics in the directory, and the queue's gauges now."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        stats = await jobs.stats()
        dead = await dead_letters.size() if dead_letters is not None else None
    except StorageError:
        log.warning("queue depth unavailable for /metrics", exc_info=True)  # the counters still answer
    else:
        registry.register(QueueDepth(stats, dead))
    return generate_latest(registry)


class MetricsEndpoint:
    """`GET /metrics` in front of the API app, for the bearer of `token` only (compared in constant time);
    every other request goes to `app` untouched. A tenant's API key is not the token, so it gets a 401."""

    def __init__(self, app: ASGIApp, *, token: str, jobs: CountedQueue, dead_letters: CountedQueue | None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.jobs = jobs
        self.dead_letters = dead_letters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _problem(send, 405, "method_not_allowed", "use GET", [(b"allow", b"GET, HEAD")])
            return
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        if not hmac.compare_digest(given, self.expected):
            await _problem(
                send, 401, "unauthorized", "metrics need the operator's token", [(b"www-authenticate", b"Bearer")]
            )
            return
        body = await render(self.jobs, self.dead_letters)
        headers = [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


async def _problem(send: Send, status: int, code: str, detail: str, extra: list[tuple[bytes, bytes]]) -> None:
    title = {401: "Unauthorized", 405: "Method not allowed"}[status]
    doc = {"type": f"urn:scrapeq:problem:{code}", "title": title, "status": status, "detail": detail, "code": code}
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

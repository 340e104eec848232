"""Operator metrics as one process-wide `Recorder`: a no-op by default; the local processes install Prometheus,
the Workers Analytics Engine data points. Domain code calls `recorder()` and never imports either."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

#: The tenant whose message this task of the event loop handles (set by the crawl handler), for recorders that
#: break figures down by tenant (Analytics Engine's index) where the call site does not know it (bytes fetched).
current_tenant: ContextVar[str | None] = ContextVar("scrapeq_current_tenant", default=None)

#: A webhook attempt's outcome by the delivery's status after it: delivered, retrying (pending), failed (gave up).
WEBHOOK_OUTCOME = {"delivered": "delivered", "pending": "retrying", "failed": "failed"}


class Recorder(Protocol):
    """What the service counts; every method is cheap, synchronous and never raises."""

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One API answer: its route template (`/tasks/{task_id}`), method, status and time taken."""

    def page(self, tenant_id: str, outcome: str, code: str | None) -> None:
        """One committed page: `stored`, `failed` (with its error code) or `skipped`."""

    def fetched(self, nbytes: int) -> None:
        """Body bytes read from the network (after decompression): pages, robots.txt and sitemaps."""

    def task_submitted(self, tenant_id: str) -> None:
        """A new task stored and enqueued."""

    def task_finished(self, tenant_id: str, status: str) -> None:
        """A task ended: `completed`, `failed` or `cancelled`."""

    def webhook(self, tenant_id: str, outcome: str) -> None:
        """One delivery attempt: `delivered`, `retrying` (failed, tried again later) or `failed` (given up)."""

    def slice_ran(self, tenant_id: str, seconds: float) -> None:
        """One crawl slice ran for `seconds` (wall time)."""


class NullRecorder:
    """Records nothing: the default everywhere until a process installs a real recorder."""

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        pass

    def page(self, tenant_id: str, outcome: str, code: str | None) -> None:
        pass

    def fetched(self, nbytes: int) -> None:
        pass

    def task_submitted(self, tenant_id: str) -> None:
        pass

    def task_finished(self, tenant_id: str, status: str) -> None:
        pass

    def webhook(self, tenant_id: str, outcome: str) -> None:
        pass

    def slice_ran(self, tenant_id: str, seconds: float) -> None:
        pass


_recorder: Recorder = NullRecorder()


def install(recorder: Recorder) -> Recorder:
    """Make `recorder` this process's recorder; returns the one it replaces (tests put it back)."""
    global _recorder
    previous, _recorder = _recorder, recorder
    return previous


def recorder() -> Recorder:
    return _recorder


def bind_tenant(tenant_id: str) -> None:
    """Note the tenant of the message being handled, for the rest of this asyncio task (and those it starts)."""
    current_tenant.set(tenant_id)

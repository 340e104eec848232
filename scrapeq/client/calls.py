"""Each API call as data (method, path, query, body, how to read the answer), shared by `Client` and
`AsyncClient`, and the retry rule both follow."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from producer.knowledge import DocumentList, Erasure, KnowledgeBaseList
from scrapeq.client.exceptions import APIConnectionError, error_from, retry_after_of
from shared.models import PageList, TaskAccepted, TaskList, TaskPublic, TaskStatus

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
#: Answers worth sending again after a pause: rate limit or quota, and a service briefly unable to serve.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
TERMINAL_EVENTS = frozenset({"task.completed", "task.failed", "task.cancelled"})


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Per-call read timeout (a long poll waits longer than a plain request).
    timeout_s: float | None = None

    def query(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, TaskStatus) else v) for k, v in self.params.items() if v is not None}


@dataclass(frozen=True)
class RetryPolicy:
    """429/503 (and 502/504, unreachable) are tried again, honouring `Retry-After`: at most `max_retries` times,
    each pause at most `max_wait_s`, and all pauses together at most `budget_s`."""

    max_retries: int = 5
    max_wait_s: float = 30.0
    budget_s: float = 60.0
    base_s: float = 0.5

    def pause_s(self, attempt: int, retry_after_s: float | None, waited_s: float) -> float | None:
        """The pause before attempt `attempt + 1`, or None when the budget says stop."""
        if attempt >= self.max_retries:
            return None
        pause = retry_after_s if retry_after_s is not None else self.base_s * 2**attempt
        if pause > self.max_wait_s or waited_s + pause > self.budget_s:
            return None
        return pause


def pause_or_raise(
    policy: RetryPolicy, attempt: int, waited_s: float, failure: httpx.Response | httpx.TransportError
) -> float:
    """The pause before trying a failed call again (an error answer, or the service unreachable), or the typed
    error to raise when it is not worth retrying or the policy's budget is spent."""
    if isinstance(failure, httpx.TransportError):
        pause = policy.pause_s(attempt, None, waited_s)
        if pause is None:
            raise APIConnectionError(0, "unreachable", f"{type(failure).__name__}: {failure}") from failure
        return pause
    pause = None
    if failure.status_code in RETRY_STATUSES:
        pause = policy.pause_s(attempt, retry_after_of(failure), waited_s)
    if pause is None:
        raise error_from(failure)
    return pause


def settings_from_env(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    return (
        (base_url or os.environ.get("SCRAPEQ_API_URL") or DEFAULT_URL).rstrip("/"),
        api_key or os.environ.get("SCRAPEQ_API_KEY") or None,
    )


def _model(kind: type[Any]) -> Callable[[httpx.Response], Any]:
    return lambda response: kind.model_validate_json(response.content)


def submit(
    url: str | None, knowledge_base_id: str, fields: dict[str, Any], idempotency_key: str | None
) -> Call[TaskAccepted]:
    body = {"knowledge_base_id": knowledge_base_id, **({"url": url} if url is not None else {}), **fields}
    body = {k: v for k, v in body.items() if v is not None}
    # Every submission carries a key, so that retrying a 429/503 (or a lost answer) never makes two tasks.
    key = idempotency_key or f"sdk-{uuid.uuid4().hex}"
    return Call("POST", "/scrape", _model(TaskAccepted), json=body, headers={"Idempotency-Key": key})


def get_task(task_id: str) -> Call[TaskPublic]:
    return Call("GET", f"/tasks/{task_id}", _model(TaskPublic))


def cancel(task_id: str) -> Call[TaskPublic]:
    return Call("DELETE", f"/tasks/{task_id}", _model(TaskPublic))


def tasks(
    knowledge_base_id: str | None, status: TaskStatus | str | None, cursor: str | None, limit: int
) -> Call[TaskList]:
    params = {"knowledge_base_id": knowledge_base_id, "status": status, "cursor": cursor, "limit": limit}
    return Call("GET", "/tasks", _model(TaskList), params=params)


def pages(task_id: str, cursor: str | None, limit: int) -> Call[PageList]:
    return Call("GET", f"/tasks/{task_id}/pages", _model(PageList), params={"cursor": cursor, "limit": limit})


def events(task_id: str | None, after: str | None, limit: int, wait_s: float, timeout_s: float) -> Call[Any]:
    path = f"/tasks/{task_id}/events" if task_id else "/events"
    params = {"after": after, "limit": limit, "wait": wait_s or None}
    return Call("GET", path, lambda r: r.json(), params=params, timeout_s=timeout_s + wait_s)


def knowledge_bases() -> Call[KnowledgeBaseList]:
    return Call("GET", "/knowledge-bases", _model(KnowledgeBaseList))


def documents(
    kb: str, cursor: str | None, limit: int, changed_since: str | None, url: str | None
) -> Call[DocumentList]:
    params = {"cursor": cursor, "limit": limit, "changed_since": changed_since, "url": url}
    return Call("GET", f"/knowledge-bases/{kb}/documents", _model(DocumentList), params=params)


def erase_knowledge_base(kb: str) -> Call[Erasure]:
    return Call("DELETE", f"/knowledge-bases/{kb}", _model(Erasure))


def erase_document(kb: str, url: str) -> Call[Erasure]:
    return Call("DELETE", f"/knowledge-bases/{kb}/documents", _model(Erasure), params={"url": url})


def last_event_id(feed: dict[str, Any], after: str | None) -> str | None:
    """Where the next read of a feed starts: after its last event (or where this read started)."""
    found = feed.get("events") or []
    return str(found[-1]["id"]) if found else after


def ended(feed: dict[str, Any]) -> bool:
    return any(event.get("type") in TERMINAL_EVENTS for event in feed.get("events") or [])

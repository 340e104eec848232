"""`AsyncClient`: the API over an asyncio httpx client, method for method the twin of `Client` (`sync.py`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx

import scrapeq.client.calls as calls
from producer.knowledge import DocumentList, DocumentPublic, Erasure, KnowledgeBaseList
from scrapeq.client.calls import TERMINAL, Call, RetryPolicy
from shared.models import Page, PageList, TaskAccepted, TaskList, TaskPublic, TaskStatus

T = TypeVar("T")


class AsyncClient:
    """A scrapeq API client. `base_url` and `api_key` default to `SCRAPEQ_API_URL` / `SCRAPEQ_API_KEY`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url, key = calls.settings_from_env(base_url, api_key)
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _run(self, call: Call[T]) -> T:
        attempt, waited = 0, 0.0
        while True:
            timeout = call.timeout_s or self.timeout_s
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.query(), json=call.json, headers=call.headers, timeout=timeout
                )
            except httpx.TransportError as exc:
                pause = calls.pause_or_raise(self.retry, attempt, waited, exc)
            else:
                if response.status_code < 400:
                    return call.read(response)
                pause = calls.pause_or_raise(self.retry, attempt, waited, response)
            await asyncio.sleep(pause)
            attempt, waited = attempt + 1, waited + pause

    async def submit(
        self, url: str | None = None, *, knowledge_base_id: str, idempotency_key: str | None = None, **fields: Any
    ) -> TaskAccepted:
        """Submit a crawl: every `POST /scrape` field by name (`urls`, `limit`, `max_depth`, `formats`,
        `include_paths`, `exclude_paths`, `allow_subdomains`, `only_main_content`, `max_age`, `sitemap`,
        `webhook`). Without an `idempotency_key` the client makes one, so its retries never make two tasks."""
        return await self._run(calls.submit(url, knowledge_base_id, fields, idempotency_key))

    async def get(self, task_id: str) -> TaskPublic:
        return await self._run(calls.get_task(task_id))

    async def cancel(self, task_id: str) -> TaskPublic:
        return await self._run(calls.cancel(task_id))

    async def tasks(
        self,
        *,
        knowledge_base_id: str | None = None,
        status: TaskStatus | str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> TaskList:
        return await self._run(calls.tasks(knowledge_base_id, status, cursor, limit))

    async def page_list(self, task_id: str, *, cursor: str | None = None, limit: int = 50) -> PageList:
        """One cursor page of the task's pages (`pages()` walks them all)."""
        return await self._run(calls.pages(task_id, cursor, limit))

    async def document_list(
        self,
        knowledge_base_id: str,
        *,
        cursor: str | None = None,
        limit: int = 50,
        changed_since: str | None = None,
        url: str | None = None,
    ) -> DocumentList:
        """One cursor page of the knowledge base's documents (`documents()` walks them all)."""
        return await self._run(calls.documents(knowledge_base_id, cursor, limit, changed_since, url))

    async def pages(self, task_id: str, *, page_size: int = 50) -> AsyncIterator[Page]:
        """Every page of the task in crawl order, fetching the next cursor page only when it is reached."""
        cursor: str | None = None
        while True:
            listed = await self._run(calls.pages(task_id, cursor, page_size))
            for page in listed.pages:
                yield page
            if listed.next_cursor is None:
                return
            cursor = listed.next_cursor

    async def events(
        self, task_id: str | None = None, *, after: str | None = None, limit: int = 100, wait_s: float = 0
    ) -> dict[str, Any]:
        """One read of the task's (or the tenant's) event feed; `wait_s` (≤ 30) long-polls for the next event."""
        return await self._run(calls.events(task_id, after, limit, wait_s, self.timeout_s))

    async def wait(self, task_id: str, *, timeout: float | None = None, poll_s: float = 20.0) -> TaskPublic:
        """The task once it has ended, following its event feed (long polls, no fixed sleep); `TimeoutError`
        after `timeout` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        task = await self.get(task_id)
        after: str | None = None
        while task.status not in TERMINAL:
            left = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"task {task_id} still {task.status.value} after {timeout} s")
            feed = await self.events(task_id, after=after, limit=1000, wait_s=max(0.0, min(30.0, left)))
            after = calls.last_event_id(feed, after)
            if calls.ended(feed) or not feed.get("events"):
                task = await self.get(task_id)
        return task

    async def knowledge_bases(self) -> KnowledgeBaseList:
        return await self._run(calls.knowledge_bases())

    async def documents(
        self, knowledge_base_id: str, *, changed_since: str | None = None, url: str | None = None, page_size: int = 50
    ) -> AsyncIterator[DocumentPublic]:
        """The knowledge base's documents (the latest version of each URL), every cursor page, lazily."""
        cursor: str | None = None
        while True:
            listed: DocumentList = await self._run(
                calls.documents(knowledge_base_id, cursor, page_size, changed_since, url)
            )
            for document in listed.documents:
                yield document
            if listed.next_cursor is None:
                return
            cursor = listed.next_cursor

    async def erase_knowledge_base(self, knowledge_base_id: str) -> Erasure:
        return await self._run(calls.erase_knowledge_base(knowledge_base_id))

    async def erase_document(self, knowledge_base_id: str, url: str) -> Erasure:
        return await self._run(calls.erase_document(knowledge_base_id, url))

"""`POST /scrape` answers the same with the fast path as through FastAPI alone, and plain submits skip FastAPI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest

from producer.app import create_app
from producer.fastpath import SubmitFastPath
from shared.backends.factory import open_memory_backends
from tests.conftest import make_settings, new_caller

VALID = {"url": "http://127.0.0.1:9/docs/", "knowledge_base_id": "kb_a1", "limit": 5}
JSON = "application/json"
# (body bytes, content type, authorization: "key" / "bad" / None, extra headers)
CASES: dict[str, tuple[bytes, str | None, str | None, dict[str, str]]] = {
    "valid": (json.dumps(VALID).encode(), JSON, "key", {}),
    "valid, charset": (json.dumps(VALID).encode(), "application/json; charset=utf-8", "key", {}),
    "valid, no credentials": (json.dumps(VALID).encode(), JSON, None, {}),
    "valid, unknown key": (json.dumps(VALID).encode(), JSON, "bad", {}),
    "invalid, no credentials": (b'{"url": "ftp://x"}', JSON, None, {}),
    "invalid field": (json.dumps({**VALID, "limit": 0}).encode(), JSON, "key", {}),
    "unknown field": (json.dumps({**VALID, "colour": "red"}).encode(), JSON, "key", {}),
    "not json": (b"{url:", JSON, "key", {}),
    "text/plain": (json.dumps(VALID).encode(), "text/plain", "key", {}),
    "no content type": (json.dumps(VALID).encode(), None, "key", {}),
    "knowledge base of another key": (json.dumps({**VALID, "knowledge_base_id": "kb_x"}).encode(), JSON, "key", {}),
    "private address": (json.dumps({**VALID, "url": "http://10.0.0.1/"}).encode(), JSON, "key", {}),
    "idempotency key too long": (json.dumps(VALID).encode(), JSON, "key", {"Idempotency-Key": "k" * 256}),
    "idempotency key": (json.dumps(VALID).encode(), JSON, "key", {"Idempotency-Key": "once"}),
}


@asynccontextmanager
async def client(tmp_path: Path, *, fast: bool) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    backends = open_memory_backends(visibility_timeout_s=30, max_retries=1)
    app = create_app(make_settings(tmp_path), backends=backends)
    if not fast:  # FastAPI alone: the stack is built on the first request
        app.user_middleware = [m for m in app.user_middleware if m.cls is not SubmitFastPath]
    caller = await new_caller(backends, "alice", ["kb_a1"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http, caller.api_key
    await backends.aclose()


async def answer(http: httpx.AsyncClient, api_key: str, case: str) -> dict[str, Any]:
    """What a client can see of the answer, less what differs by nature (ids, times, remaining tokens)."""
    body, content_type, auth, extra = CASES[case]
    headers = dict(extra)
    if content_type is not None:
        headers["Content-Type"] = content_type
    if auth is not None:
        headers["Authorization"] = f"Bearer {api_key if auth == 'key' else 'sq_nope'}"
    first = await http.post("/scrape", content=body, headers=headers)
    again = await http.post("/scrape", content=body, headers=headers)  # a replay, for the idempotency case
    seen = []
    for response in (first, again):
        document = response.json()
        for varying in ("task_id", "status_url", "created_at"):
            document.pop(varying, None)
        seen.append(
            {
                "status": response.status_code,
                "content-type": response.headers["content-type"],
                "headers": sorted(set(response.headers) - {"date", "content-length"}),
                "www-authenticate": response.headers.get("www-authenticate"),
                "ratelimit-policy": response.headers.get("ratelimit-policy"),
                "document": document,
            }
        )
    return {"first": seen[0], "again": seen[1]}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_the_fast_path_answers_as_fastapi_does(tmp_path: Path, case: str) -> None:
    async with client(tmp_path / "fast", fast=True) as (http, key):
        fast = await answer(http, key, case)
    async with client(tmp_path / "plain", fast=False) as (http, key):
        plain = await answer(http, key, case)
    assert fast == plain


async def test_plain_submits_skip_fastapis_dependency_solving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    solved: list[str] = []
    original = fastapi.routing.solve_dependencies

    async def spy(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", spy)
    async with client(tmp_path, fast=True) as (http, key):
        for case in ("valid", "valid, no credentials", "idempotency key too long"):
            await answer(http, key, case)
        assert solved == []
        await answer(http, key, "invalid field")  # FastAPI words the problem
        await http.get("/tasks", headers={"Authorization": f"Bearer {key}"})
    assert solved == ["/scrape", "/scrape", "/tasks"]

"""JS-shaped stand-ins of the Workers runtime's bindings and `fetch`, for the Worker entries on CPython."""

from __future__ import annotations

import bisect
import itertools
import types
from typing import Any

import httpx


class FakeKVNamespace:
    """A KV namespace binding as the SDK wrapper presents it: Python values, None for a missing key."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[str, dict[str, Any]]] = {}
        self.keys: list[str] = []

    async def get(self, key: str) -> str | None:
        entry = self.data.get(key)
        return entry[0] if entry else None

    async def put(self, key: str, value: str, options: dict[str, Any] | None = None) -> None:
        if key not in self.data:
            bisect.insort(self.keys, key)
        self.data[key] = (value, options or {})

    async def delete(self, key: str) -> None:
        if self.data.pop(key, None) is not None:
            self.keys.remove(key)

    async def list(self, options: dict[str, Any]) -> dict[str, Any]:
        prefix, limit = options.get("prefix", ""), options["limit"]
        start = int(options.get("cursor") or 0)
        names = [k for k in self.keys if k.startswith(prefix)]
        page = names[start : start + limit]
        done = start + limit >= len(names)
        listed = [{"name": n, **{k: v for k, v in self.data[n][1].items() if k == "metadata"}} for n in page]
        result: dict[str, Any] = {"keys": listed, "list_complete": done}
        if not done:
            result["cursor"] = str(start + limit)
        return result


class FakeQueueProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], dict[str, Any]]] = []

    async def send(self, body: dict[str, Any], options: dict[str, Any] | None = None) -> None:
        self.sent.append((body, options or {}))


class FakeMessage:
    """A queue message as the runtime hands it over, recording how it was settled."""

    _ids = itertools.count()

    def __init__(self, body: dict[str, Any], attempts: int = 1, message_id: str | None = None) -> None:
        self.id = message_id or f"msg-{next(self._ids)}"
        self.body = body
        self.attempts = attempts
        self.settled: tuple[str, dict[str, Any]] | None = None

    def ack(self) -> None:
        self.settled = ("ack", {})

    def retry(self, options: dict[str, Any] | None = None) -> None:
        self.settled = ("retry", options or {})


class FakeReader:
    def __init__(self, body: bytes) -> None:
        self.chunks = [body[i : i + 16384] for i in range(0, len(body), 16384)]

    async def read(self) -> types.SimpleNamespace:
        if not self.chunks:
            return types.SimpleNamespace(done=True, value=None)
        return types.SimpleNamespace(done=False, value=self.chunks.pop(0))

    async def cancel(self) -> None:
        self.chunks.clear()


class FakeResponse:
    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.headers = types.SimpleNamespace(entries=lambda: [[k, v] for k, v in response.headers.items()])
        self.body = types.SimpleNamespace(getReader=lambda: FakeReader(response.content))


class FakeJsFetch:
    """JS `fetch` with the runtime's behaviour that matters here: `redirect: "manual"` is honoured."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def __call__(self, url: str, init: dict[str, Any]) -> FakeResponse:
        assert init["redirect"] == "manual"
        headers = {name: value for name, value in init["headers"]}
        self.requests.append((url, headers))
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            response = await client.request(init["method"], url, headers=headers)
        return FakeResponse(response)


class FakeAsgi:
    """The runtime's ASGI adapter: a JS `Request` in, a `Response` out, the app run in between."""

    @staticmethod
    async def fetch(app: Any, request: httpx.Request, env: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://api.example") as client:
            return await client.send(request)

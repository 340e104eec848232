"""Both Worker entries on CPython, through thin stand-ins of the Workers runtime and JS-shaped bindings.

`workers`, `asgi` and `js` are the runtime's modules; here they are small fakes: the producer's `fetch`
goes through an ASGI call, the consumer's `queue` gets batches of JS-shaped messages (`ack()`,
`retry(options)`), and JS `fetch` is a Python function answering like the runtime's (`redirect: "manual"`,
`headers.entries()`, a body reader). What runs for real is everything of ours in between: submit →
enqueue → consume → KV → status.
"""

from __future__ import annotations

import collections
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.backends.durable import CoordinationObject
from shared.coordination import MemoryState
from shared.settings import Settings
from shared.stores.accounts import Accounts
from tests.fixtures.sitegen import generate
from tests.fixtures.static import serve_directory
from tests.integration.worker_fakes import FakeAsgi, FakeJsFetch, FakeKVNamespace, FakeMessage, FakeQueueProducer

QUEUE = "scrapeq-jobs"


class WorkerEntrypoint:
    def __init__(self, ctx: Any, env: Any) -> None:
        self.ctx = ctx
        self.env = env


@pytest.fixture
def js_fetch(monkeypatch: pytest.MonkeyPatch) -> FakeJsFetch:
    fetch = FakeJsFetch()
    workers = types.SimpleNamespace(WorkerEntrypoint=WorkerEntrypoint, DurableObject=WorkerEntrypoint)
    monkeypatch.setitem(sys.modules, "workers", workers)
    monkeypatch.setitem(sys.modules, "asgi", FakeAsgi)
    monkeypatch.setitem(sys.modules, "js", types.SimpleNamespace(fetch=fetch))
    return fetch


@pytest.fixture
def env() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        KV=FakeKVNamespace(),
        JOBS=FakeQueueProducer(),
        SCRAPEQ_ALLOW_PRIVATE_NETWORKS="127.0.0.0/8",
        SCRAPEQ_SLICE_MAX_PAGES="5",
        SCRAPEQ_CANCEL_CHECK_INTERVAL_S="0",
    )


@pytest.fixture
def workers(js_fetch: FakeJsFetch, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[types.ModuleType, ...]]:
    import consumer.worker
    import producer.worker

    monkeypatch.setattr(producer.worker, "_app", None)
    monkeypatch.setattr(consumer.worker, "_handler", None)
    yield producer.worker, consumer.worker


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("site")
    generate(root, pages=40, seed=11)
    with serve_directory(root) as base:
        yield base


async def call(
    producer: Any, env: Any, method: str, path: str, key: str, *, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **(headers or {})}
    request = httpx.Request(method, f"https://api.example{path}", headers=headers, **kwargs)
    return await producer.Default(None, env).fetch(types.SimpleNamespace(js_object=request))  # type: ignore[no-any-return]


async def run_queue(consumer: Any, env: Any, *, batch_size: int = 3) -> list[FakeMessage]:
    """Deliver what the producers sent, in batches, until the queue is empty (retries delivered again)."""
    delivered: list[FakeMessage] = []
    pending = [FakeMessage(body) for body, _ in env.JOBS.sent]
    env.JOBS.sent.clear()
    while pending:
        batch, pending = pending[:batch_size], pending[batch_size:]
        await consumer.Default(None, env).queue(types.SimpleNamespace(queue=QUEUE, messages=batch))
        delivered += batch
        for message in batch:
            assert message.settled is not None, "every message of a batch is acked or retried"
            if message.settled[0] == "retry":
                pending.append(FakeMessage(message.body, message.attempts + 1, message.id))
        pending += [FakeMessage(body) for body, _ in env.JOBS.sent]
        env.JOBS.sent.clear()
    return delivered


async def new_key(env: Any) -> str:
    from shared.backends.cloudflare import CloudflareKV

    accounts = Accounts(CloudflareKV(env.KV))
    tenant = await accounts.create_tenant("edge", ["kb_edge"])
    _, api_key = await accounts.create_key(tenant.tenant_id)
    return api_key


async def test_submit_consume_and_read_back_through_both_worker_entries(
    workers: tuple[Any, Any], env: Any, site: str, js_fetch: FakeJsFetch
) -> None:
    producer, consumer = workers
    key = await new_key(env)
    submitted = await call(
        producer,
        env,
        "POST",
        "/scrape",
        key,
        headers={"X-Request-ID": "edge-trace-1"},
        json={"url": f"{site}/index.html", "knowledge_base_id": "kb_edge", "limit": 12},
    )
    assert submitted.status_code == 202 and submitted.headers["x-request-id"] == "edge-trace-1"
    task_id = submitted.json()["task_id"]
    assert (await call(producer, env, "GET", f"/tasks/{task_id}", key)).json()["status"] == "queued"
    [(body, options)] = env.JOBS.sent
    assert body == {
        "kind": "crawl",
        "tenant_id": body["tenant_id"],
        "task_id": task_id,
        "slice": 0,
        "request_id": "edge-trace-1",
    }
    assert options.get("contentType") == "json"

    delivered = await run_queue(consumer, env)

    task = (await call(producer, env, "GET", f"/tasks/{task_id}", key)).json()
    assert task["status"] == "completed"
    assert task["progress"]["pages_done"] == 12
    assert len(delivered) >= 3  # 12 pages in slices of at most 5: the crawl continued in follow-up messages
    assert all(m.settled == ("ack", {}) for m in delivered)
    pages = (await call(producer, env, "GET", f"/tasks/{task_id}/pages?limit=100", key)).json()["pages"]
    assert len({p["url"] for p in pages}) == 12
    assert all(p["markdown"] for p in pages)
    user_agents = {headers.get("user-agent") for _, headers in js_fetch.requests}
    assert user_agents == {"scrapeq/0.1 (+https://github.com/scrapeq/scrapeq)"}  # the UA reaches the site
    assert any(url.endswith("/robots.txt") for url, _ in js_fetch.requests)


async def test_a_retryable_start_failure_is_retried_with_a_delay_through_the_message(
    workers: tuple[Any, Any], env: Any
) -> None:
    producer, consumer = workers
    key = await new_key(env)
    env.SCRAPEQ_QUEUE_MAX_RETRIES = "1"
    submitted = await call(
        producer, env, "POST", "/scrape", key, json={"url": "http://127.0.0.1:9/", "knowledge_base_id": "kb_edge"}
    )
    task_id = submitted.json()["task_id"]
    delivered = await run_queue(consumer, env)
    first, last = delivered[0], delivered[-1]
    assert first.settled is not None and first.settled[0] == "retry"
    assert first.settled[1]["delaySeconds"] >= 1
    assert last.attempts == 2 and last.settled == ("ack", {})
    task = (await call(producer, env, "GET", f"/tasks/{task_id}", key)).json()
    assert task["status"] == "failed"
    assert task["error"]["code"] == "robots_unreachable"


async def test_a_dead_lettered_message_fails_its_task(workers: tuple[Any, Any], env: Any, site: str) -> None:
    producer, consumer = workers
    key = await new_key(env)
    submitted = await call(
        producer, env, "POST", "/scrape", key, json={"url": f"{site}/index.html", "knowledge_base_id": "kb_edge"}
    )
    task_id = submitted.json()["task_id"]
    [(body, _)] = env.JOBS.sent
    for sent in range(2, Settings().queue_max_revivals + 3):  # sent again after each dead letter, then failed
        message = FakeMessage(body, attempts=1)
        await consumer.Default(None, env).queue(types.SimpleNamespace(queue="scrapeq-jobs-dlq", messages=[message]))
        assert message.settled == ("ack", {})
        assert len(env.JOBS.sent) == min(sent, Settings().queue_max_revivals + 1)
    task = (await call(producer, env, "GET", f"/tasks/{task_id}", key)).json()
    assert task["status"] == "failed"
    assert task["error"]["code"] == "retries_exhausted"


class FakeRateLimiter:
    """A Rate Limiting binding: `limit({key})` → `{success}`, allowing `limit` calls per key."""

    def __init__(self, limit: int) -> None:
        self.limit_per_key = limit
        self.keys: list[str] = []

    async def limit(self, options: dict[str, Any]) -> dict[str, Any]:
        self.keys.append(options["key"])
        return {"success": self.keys.count(options["key"]) <= self.limit_per_key}


async def test_the_worker_limits_each_cf_connecting_ip_through_the_rate_limit_binding(
    workers: tuple[Any, Any], env: Any
) -> None:
    producer, _ = workers
    env.RATE_LIMIT_IP, env.RATE_LIMIT_KEY = FakeRateLimiter(2), FakeRateLimiter(100)
    key = await new_key(env)

    async def get(address: str, forged: str) -> httpx.Response:
        headers = {"CF-Connecting-IP": address, "X-Forwarded-For": forged}
        return await call(producer, env, "GET", "/tasks", key, headers=headers)

    assert [(await get("192.0.2.1", f"10.0.0.{n}")).status_code for n in range(3)] == [200, 200, 429]
    refused = await get("192.0.2.1", "10.0.0.9")
    assert refused.json()["policy"] == "ip"
    assert refused.headers["retry-after"] == "10"  # the binding's window
    assert (await get("2001:db8::1", "10.0.0.1")).status_code == 200
    assert set(env.RATE_LIMIT_IP.keys) == {"192.0.2.1", "2001:db8::/64"}  # never the forged header
    assert len(env.RATE_LIMIT_KEY.keys) == 3  # authenticated requests that passed the address limit


async def test_the_producer_worker_serves_the_dashboard_with_its_policy(workers: tuple[Any, Any], env: Any) -> None:
    from producer.dashboard.serving import ASSETS, CONTENT_SECURITY_POLICY

    producer, _ = workers
    for path, asset in ASSETS.items():
        answer = await call(producer, env, "GET", path, "")
        assert answer.status_code == 200, path
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert answer.text == asset.body


class StandInStorage(MemoryState):
    """A SQLite-backed object's synchronous `ctx.storage.kv`, as the Pyodide harness's JS stand-in has it: the
    core's own `MemoryState`, plus the binding's `list({prefix})` in key order."""

    def __init__(self) -> None:
        super().__init__()
        self.kv = self

    def list(self, options: dict[str, Any]) -> Iterator[tuple[str, str]]:
        return iter(sorted(self.items(options.get("prefix", ""))))


class StandInNamespace:
    """`idFromName` / `get(id)` / the stub's RPC `call`, counting calls per object and operation."""

    def __init__(self) -> None:
        self.objects: dict[str, CoordinationObject] = {}
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()

    def idFromName(self, name: str) -> str:
        return name

    def get(self, name: str) -> types.SimpleNamespace:
        async def call(op: str, payload: str) -> str:
            self.calls[(name.split(":", 1)[0], op)] += 1
            target = self.objects.setdefault(name, CoordinationObject(StandInStorage()))
            return await target.call(op, payload)

        return types.SimpleNamespace(call=call)


async def test_a_crawl_takes_its_places_keys_and_host_slots_from_the_objects(
    workers: tuple[Any, Any], env: Any, site: str, js_fetch: FakeJsFetch
) -> None:
    producer, consumer = workers
    env.COORDINATION = namespace = StandInNamespace()
    key = await new_key(env)
    body = {"url": f"{site}/index.html", "knowledge_base_id": "kb_edge", "limit": 8}
    first = await call(producer, env, "POST", "/scrape", key, headers={"Idempotency-Key": "k-1"}, json=body)
    again = await call(producer, env, "POST", "/scrape", key, headers={"Idempotency-Key": "k-1"}, json=body)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["task_id"] == first.json()["task_id"]
    await run_queue(consumer, env)
    task = (await call(producer, env, "GET", f"/tasks/{first.json()['task_id']}", key)).json()
    assert task["status"] == "completed" and task["progress"]["pages_done"] == 8
    assert namespace.calls[("tenant", "swap_key")] == 2  # the key reserved once, the replay found it
    assert namespace.calls[("tenant", "reserve_quota")] == 1
    assert namespace.calls[("tenant", "release_quota")] >= 1  # the task's end gave its place back
    fetched = len(js_fetch.requests)  # pages and robots.txt, each inside the host's slot
    assert namespace.calls[("host", "acquire_host")] >= fetched
    assert namespace.calls[("host", "release_host")] >= fetched
    assert [name for name in namespace.objects if name.startswith("host:")] == [f"host:{site.split('//')[1]}"]


class FakeR2Bucket:
    """An R2 bucket binding as the SDK wrapper presents it, for objects under one part (plain `put`s)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def put(self, key: str, value: bytes) -> None:
        self.objects[key] = bytes(value)

    async def head(self, key: str) -> dict[str, Any] | None:
        return {"size": len(self.objects[key])} if key in self.objects else None

    async def get(self, key: str, options: dict[str, Any]) -> Any:
        offset, length = options["range"]["offset"], options["range"]["length"]
        data = self.objects[key][offset : offset + length]

        async def array_buffer() -> bytes:
            return data

        return types.SimpleNamespace(arrayBuffer=array_buffer)

    async def list(self, options: dict[str, Any]) -> dict[str, Any]:
        found = [{"key": k, "size": len(v)} for k, v in sorted(self.objects.items()) if k.startswith(options["prefix"])]
        return {"objects": found, "truncated": False}

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)


async def test_the_consumer_workers_cron_backs_up_every_tenant_and_sweeps(workers: tuple[Any, Any], env: Any) -> None:
    from datetime import date

    from shared import backups
    from shared.backends.cloudflare import CloudflareKV
    from shared.backends.objects import MemoryObjects

    _, consumer = workers
    env.BACKUPS = FakeR2Bucket()
    env.SCRAPEQ_BACKUP_RETENTION_DAYS = "7"
    await new_key(env)
    env.BACKUPS.objects["backups/2026-11-01/tn_gone.jsonl.gz"] = b"old"
    scheduled_ms = 1_796_094_000_000  # 2026-12-01T03:40:00Z
    other = types.SimpleNamespace(cron="0 * * * *", scheduledTime=scheduled_ms)
    await consumer.Default(None, env).scheduled(other, env, None)
    assert list(env.BACKUPS.objects) == ["backups/2026-11-01/tn_gone.jsonl.gz"]  # not our schedule: nothing ran
    daily = types.SimpleNamespace(cron="17 3 * * *", scheduledTime=scheduled_ms)
    await consumer.Default(None, env).scheduled(daily, env, None)
    [tenant] = [t async for t in backups.tenant_ids(CloudflareKV(env.KV))]
    key = backups.backup_key(date(2026, 12, 1), tenant)
    assert sorted(env.BACKUPS.objects) == ["backups/2026-12-01/manifest.json", key]  # the old day is swept (> 7 days)
    copy = MemoryObjects()
    copy.objects[key] = env.BACKUPS.objects[key]
    assert await backups.check_backup(copy, key) == (tenant, 6)

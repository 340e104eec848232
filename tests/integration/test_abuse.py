"""Abusive clients against the API: rate limits per client address, API key and tenant (429, `Retry-After`,
`RateLimit` headers), tenant overrides, and the quotas of concurrent tasks and pages per UTC day."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from producer.app import create_app
from producer.submit import CONCURRENCY_RETRY_AFTER_S, seconds_to_next_day
from shared import keys
from shared.backends.base import Backends
from shared.backends.factory import open_memory_backends, open_sqlite_backends
from shared.models import ScrapeRequest, Task, TaskStatus, utcnow
from shared.settings import Settings
from shared.stores.accounts import Accounts
from shared.stores.quotas import PAGES_CHECKPOINT_EVERY, KvQuotaLedger, Quotas
from shared.stores.tasks import TaskStore
from tests.conftest import Caller, make_settings
from tests.integration.test_api import assert_problem, scrape_body


@pytest.fixture(params=["memory", "sqlite"])
async def backends(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Backends]:
    """Both quota ledgers: over KV keys (as on Cloudflare) and the embedded database's own."""
    options = {"visibility_timeout_s": settings.queue_visibility_timeout_s, "max_retries": settings.queue_max_retries}
    if request.param == "memory":
        opened: Backends = open_memory_backends(**options)
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        opened = open_sqlite_backends(settings.data_dir / "scrapeq.sqlite3", **options)
    yield opened
    await opened.aclose()


@pytest.fixture
def make_app(tmp_path: Path, backends: Backends) -> Callable[..., FastAPI]:
    def make(**overrides: object) -> FastAPI:
        return create_app(make_settings(tmp_path, **overrides), backends=backends)

    return make


@asynccontextmanager
async def client_of(app: FastAPI, address: str = "203.0.113.1") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def second_key(backends: Backends, caller: Caller) -> dict[str, str]:
    _, api_key = await Accounts(backends.kv).create_key(caller.tenant.tenant_id)
    return {"Authorization": f"Bearer {api_key}"}


def assert_limited(response: httpx.Response, policy: str) -> None:
    problem = assert_problem(response, 429, "rate_limited")
    assert problem["policy"] == policy
    assert int(response.headers["retry-after"]) >= 1
    assert f'"{policy}";r=0' in response.headers["ratelimit"]


# --- rate limits


async def test_a_key_over_its_rate_gets_429_while_another_key_of_the_tenant_still_passes(
    make_app: Callable[..., FastAPI], backends: Backends, alice: Caller
) -> None:
    app = make_app(rate_limit_per_s=0.01, rate_limit_burst=3)
    other = await second_key(backends, alice)
    async with client_of(app) as api:
        assert [(await api.get("/tasks", headers=alice.headers)).status_code for _ in range(3)] == [200] * 3
        assert_limited(await api.get("/tasks", headers=alice.headers), "key")
        assert (await api.get("/tasks", headers=other)).status_code == 200


async def test_a_tenant_over_its_rate_gets_429_on_every_key_while_other_tenants_pass(
    make_app: Callable[..., FastAPI], backends: Backends, alice: Caller, bob: Caller
) -> None:
    app = make_app(tenant_rate_limit_per_s=0.01, tenant_rate_limit_burst=4)
    other = await second_key(backends, alice)
    async with client_of(app) as api:
        for headers in (alice.headers, other) * 2:
            assert (await api.get("/tasks", headers=headers)).status_code == 200
        assert_limited(await api.get("/tasks", headers=alice.headers), "tenant")
        assert_limited(await api.get("/tasks", headers=other), "tenant")
        assert (await api.get("/tasks", headers=bob.headers)).status_code == 200


async def test_an_address_over_its_rate_gets_429_before_authentication_while_other_addresses_pass(
    make_app: Callable[..., FastAPI], alice: Caller
) -> None:
    app = make_app(ip_rate_limit_per_s=0.01, ip_rate_limit_burst=3)
    guess = {"Authorization": "Bearer sq_aaaaaaaaaaaa_" + "a" * 48 + "00000000"}
    async with client_of(app, "198.51.100.7") as guesser, client_of(app, "198.51.100.8") as neighbour:
        assert [(await guesser.get("/tasks", headers=guess)).status_code for _ in range(3)] == [401] * 3
        assert_limited(await guesser.get("/tasks", headers=guess), "ip")
        assert_limited(await guesser.get("/tasks", headers=alice.headers), "ip")  # a valid key does not help
        assert_limited(await guesser.get("/health"), "ip")
        assert_limited(await guesser.post("/scrape", content=b"x" * 1_000_000), "ip")  # refused before the body
        assert (await neighbour.get("/tasks", headers=alice.headers)).status_code == 200


async def test_an_ipv6_client_is_limited_by_its_64_prefix(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(ip_rate_limit_per_s=0.01, ip_rate_limit_burst=2)
    async with client_of(app, "2001:db8:0:1::1") as first, client_of(app, "2001:db8:0:1::2") as second:
        async with client_of(app, "2001:db8:0:2::1") as elsewhere:
            assert (await first.get("/health")).status_code == 200
            assert (await second.get("/health")).status_code == 200
            assert_limited(await first.get("/health"), "ip")
            assert (await elsewhere.get("/health")).status_code == 200


async def test_a_client_sent_forwarded_header_is_not_trusted_by_default(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(ip_rate_limit_per_s=0.01, ip_rate_limit_burst=2)
    async with client_of(app) as api:
        statuses = [
            (await api.get("/health", headers={"X-Forwarded-For": f"192.0.2.{n}"})).status_code for n in range(3)
        ]
    assert statuses == [200, 200, 429]


async def test_a_trusted_proxy_header_gives_each_client_its_own_bucket(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(ip_rate_limit_per_s=0.01, ip_rate_limit_burst=2, client_ip_header="X-Forwarded-For")

    def via_proxy(client: str) -> dict[str, str]:  # a client can prepend anything; the proxy appends the truth
        return {"X-Forwarded-For": f"10.9.9.9, {client}"}

    async with client_of(app, "10.0.0.1") as proxy:
        for _ in range(2):
            assert (await proxy.get("/health", headers=via_proxy("192.0.2.1"))).status_code == 200
        assert_limited(await proxy.get("/health", headers=via_proxy("192.0.2.1")), "ip")
        assert (await proxy.get("/health", headers=via_proxy("192.0.2.2"))).status_code == 200


async def test_successes_carry_the_ratelimit_headers_of_every_limit(
    make_app: Callable[..., FastAPI], alice: Caller
) -> None:
    app = make_app()
    async with client_of(app) as api:
        listed = await api.get("/tasks", headers=alice.headers)
        submitted = await api.post("/scrape", json=scrape_body(), headers=alice.headers)  # a route's own Response
        health = await api.get("/health")
    for response in (listed, submitted):
        assert response.status_code in (200, 202)
        assert response.headers["ratelimit-policy"] == '"ip";q=100;w=5, "key";q=50;w=5, "tenant";q=100;w=5'
        assert [item.split(";")[0] for item in response.headers["ratelimit"].split(", ")] == [
            '"ip"',
            '"key"',
            '"tenant"',
        ]
        assert "retry-after" not in response.headers
    assert health.headers["ratelimit-policy"] == '"ip";q=100;w=5'


async def test_a_tenants_own_rate_replaces_the_defaults(
    make_app: Callable[..., FastAPI], backends: Backends, alice: Caller, bob: Caller
) -> None:
    await Accounts(backends.kv).set_limits(alice.tenant.tenant_id, {"rate_limit_per_s": 0.01, "rate_limit_burst": 2})
    app = make_app()
    async with client_of(app) as api:
        assert [(await api.get("/tasks", headers=alice.headers)).status_code for _ in range(3)] == [200, 200, 429]
        assert (await api.get("/tasks", headers=bob.headers)).status_code == 200


# --- quotas


async def submit(api: httpx.AsyncClient, caller: Caller, **overrides: object) -> httpx.Response:
    return await api.post("/scrape", json=scrape_body(**overrides), headers=caller.headers)


def assert_quota(response: httpx.Response, quota: str, status: int = 429) -> dict[str, object]:
    problem = assert_problem(response, status, "quota_exceeded")
    assert problem["quota"] == quota
    return problem


async def test_concurrent_tasks_over_the_quota_get_429_until_one_ends(
    make_app: Callable[..., FastAPI], backends: Backends, alice: Caller, bob: Caller
) -> None:
    await Accounts(backends.kv).set_limits(alice.tenant.tenant_id, {"max_concurrent_tasks": 2})
    async with client_of(make_app()) as api:
        first = (await submit(api, alice)).json()["task_id"]
        assert (await submit(api, alice)).status_code == 202
        refused = await submit(api, alice)
        problem = assert_quota(refused, "concurrent_tasks")
        assert (problem["limit"], problem["used"]) == (2, 2)
        assert refused.headers["retry-after"] == str(CONCURRENCY_RETRY_AFTER_S)
        assert (await submit(api, bob, knowledge_base_id="kb_b1")).status_code == 202  # another tenant
        await backends.quotas.release(alice.tenant.tenant_id, first)  # what the consumer does when a task ends
        assert (await submit(api, alice)).status_code == 202


async def test_a_task_that_ended_without_removing_its_marker_frees_its_place(
    make_app: Callable[..., FastAPI], backends: Backends, alice: Caller
) -> None:
    await Accounts(backends.kv).set_limits(alice.tenant.tenant_id, {"max_concurrent_tasks": 1})
    tasks = TaskStore(backends.kv)
    async with client_of(make_app()) as api:
        task_id = (await submit(api, alice)).json()["task_id"]
        task = await tasks.get(alice.tenant.tenant_id, task_id)
        assert task is not None
        task.status = TaskStatus.COMPLETED  # ended, but the release of its place was lost
        await tasks.save(task)
        assert (await submit(api, alice)).status_code == 202
        assert_quota(await submit(api, alice), "concurrent_tasks")  # the new task holds the one place


async def test_an_idempotent_replay_reserves_nothing_more(
    make_app: Callable[..., FastAPI], backends: Backends, alice: Caller
) -> None:
    await Accounts(backends.kv).set_limits(alice.tenant.tenant_id, {"max_concurrent_tasks": 1, "max_pages_per_day": 5})
    headers = {**alice.headers, "Idempotency-Key": "once"}
    async with client_of(make_app()) as api:
        assert (await api.post("/scrape", json=scrape_body(), headers=headers)).status_code == 202
        assert (await api.post("/scrape", json=scrape_body(), headers=headers)).status_code == 200
        assert_quota(await submit(api, alice, limit=1), "pages_per_day")


async def test_pages_over_the_daily_quota_get_429_until_utc_midnight(
    make_app: Callable[..., FastAPI], backends: Backends, alice: Caller, bob: Caller
) -> None:
    await Accounts(backends.kv).set_limits(alice.tenant.tenant_id, {"max_pages_per_day": 10})
    async with client_of(make_app()) as api:
        assert (await submit(api, alice, limit=6)).status_code == 202
        refused = await submit(api, alice, limit=5)
        problem = assert_quota(refused, "pages_per_day")
        assert (problem["limit"], problem["used"], problem["requested"]) == (10, 6, 5)
        assert abs(int(refused.headers["retry-after"]) - seconds_to_next_day(utcnow())) <= 5
        assert (await submit(api, alice, limit=4)).status_code == 202  # exactly fills the day
        assert_quota(await submit(api, alice, limit=1), "pages_per_day")
        assert (await submit(api, bob, knowledge_base_id="kb_b1", limit=50)).status_code == 202


async def test_a_task_larger_than_the_daily_quota_gets_422(
    make_app: Callable[..., FastAPI], backends: Backends, alice: Caller
) -> None:
    await Accounts(backends.kv).set_limits(alice.tenant.tenant_id, {"max_pages_per_day": 10})
    async with client_of(make_app()) as api:
        refused = await submit(api, alice, limit=11)
    assert_quota(refused, "pages_per_day", status=422)
    assert "retry-after" not in refused.headers


async def test_only_tasks_submitted_today_count_against_the_daily_quota(
    make_app: Callable[..., FastAPI], backends: Backends, alice: Caller
) -> None:
    await Accounts(backends.kv).set_limits(alice.tenant.tenant_id, {"max_pages_per_day": 10})
    tasks = TaskStore(backends.kv)
    request = ScrapeRequest.model_validate(scrape_body(limit=10))
    yesterday = utcnow() - timedelta(days=1)
    task = Task(task_id="a" * 32, tenant_id=alice.tenant.tenant_id, request=request, created_at=yesterday)
    refusal = await backends.quotas.reserve(
        task.tenant_id, task.task_id, pages=10, quotas=Quotas(0, 10), now=yesterday, tasks=tasks
    )
    assert refusal is None
    await tasks.create(task)
    async with client_of(make_app()) as api:
        assert (await submit(api, alice, limit=10)).status_code == 202


async def test_a_quota_of_zero_is_no_quota(make_app: Callable[..., FastAPI], backends: Backends, alice: Caller) -> None:
    await Accounts(backends.kv).set_limits(alice.tenant.tenant_id, {"max_concurrent_tasks": 0, "max_pages_per_day": 0})
    async with client_of(make_app(max_concurrent_tasks=1, max_pages_per_day=1)) as api:
        assert [(await submit(api, alice, limit=10_000)).status_code for _ in range(3)] == [202] * 3


DAY_MS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)


async def index_tasks(tasks: TaskStore, tenant_id: str, limits: list[int], *, from_ms: int) -> None:
    for n, limit in enumerate(limits):
        created_at = datetime.fromtimestamp((from_ms + n) / 1000, tz=UTC)
        request = ScrapeRequest.model_validate(scrape_body(limit=limit))
        await tasks.create(Task(task_id=uuid.uuid4().hex, tenant_id=tenant_id, request=request, created_at=created_at))


async def test_the_days_sum_is_checkpointed_once_enough_keys_have_settled(backends: Backends, alice: Caller) -> None:
    tasks, tenant_id = TaskStore(backends.kv), alice.tenant.tenant_id
    ledger = KvQuotaLedger(backends.kv)
    await index_tasks(tasks, tenant_id, [3] * 5, from_ms=DAY_MS - 10_000)  # the day before
    await index_tasks(tasks, tenant_id, [1, 2] * (PAGES_CHECKPOINT_EVERY // 2), from_ms=DAY_MS)
    settled_ms = DAY_MS + 60_000
    await index_tasks(tasks, tenant_id, [7], from_ms=settled_ms + 1)  # too recent for a checkpoint
    expected = 3 * PAGES_CHECKPOINT_EVERY // 2 + 7
    assert (
        await ledger.pages_reserved_since(tenant_id, DAY_MS, stop_above=10**6, settled_ms=settled_ms, tasks=tasks)
        == expected
    )
    checkpoints = (await backends.kv.list(prefix=keys.pages_checkpoints_prefix(tenant_id, DAY_MS))).keys
    assert [json.loads(await backends.kv.get(c.name) or "") for c in checkpoints] == [
        {"until_ms": settled_ms, "pages": expected - 7}
    ]
    # From now on only what came after the checkpoint is listed, and the sum goes on from it.
    await index_tasks(tasks, tenant_id, [5], from_ms=settled_ms + 2)
    assert (
        await ledger.pages_reserved_since(tenant_id, DAY_MS, stop_above=10**6, settled_ms=settled_ms, tasks=tasks)
        == expected + 5
    )
    assert await ledger.pages_reserved_since(tenant_id, DAY_MS, stop_above=10, settled_ms=settled_ms, tasks=tasks) > 10


async def test_a_task_indexed_without_its_limit_still_counts(backends: Backends, alice: Caller) -> None:
    tasks = TaskStore(backends.kv)
    request = ScrapeRequest.model_validate(scrape_body())
    created_at = utcnow().replace(microsecond=0)  # a whole millisecond: its index key is the one written below
    task = Task(task_id="b" * 32, tenant_id=alice.tenant.tenant_id, request=request, created_at=created_at)
    await tasks.create(task)
    created_ms = int(task.created_at.timestamp() * 1000)
    await backends.kv.put(keys.task_index(task.tenant_id, created_ms, task.task_id), task.task_id)  # no metadata
    assert len((await backends.kv.list(prefix=keys.task_index_prefix(task.tenant_id))).keys) == 1
    ledger = KvQuotaLedger(backends.kv)
    assert await ledger.pages_reserved_since(task.tenant_id, created_ms, stop_above=100, settled_ms=0, tasks=tasks) == 5

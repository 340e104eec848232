"""The HTTP API against in-memory backends: every status code of SPEC §1, isolation, idempotency, pagination."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest

from producer import submit as submission
from shared.backends.base import Backends
from shared.models import Page, ScrapeRequest, Task, TaskStatus, utcnow
from shared.stores.accounts import Accounts
from shared.stores.tasks import IdempotencyRecord, TaskStore
from tests.conftest import Caller, new_caller

PROBLEM = "application/problem+json"


def scrape_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"url": "http://127.0.0.1:9/docs/", "knowledge_base_id": "kb_a1", "limit": 5}
    body.update(overrides)
    return body


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert problem["status"] == status
    if code is not None:
        assert problem["code"] == code
    return problem


async def submit(api: httpx.AsyncClient, caller: Caller, **overrides: object) -> httpx.Response:
    return await api.post("/scrape", json=scrape_body(**overrides), headers=caller.headers)


async def test_health_answers_ok_without_auth(api: httpx.AsyncClient) -> None:
    response = await api.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_openapi_and_docs_are_served(api: httpx.AsyncClient) -> None:
    assert (await api.get("/docs")).status_code == 200
    spec = (await api.get("/openapi.json")).json()
    assert {"/scrape", "/tasks", "/tasks/{task_id}", "/tasks/{task_id}/pages"} <= spec["paths"].keys()
    submit = spec["paths"]["/scrape"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ScrapeRequest"
    }
    assert [p["name"] for p in submit["parameters"]] == ["Idempotency-Key"]


async def test_submit_answers_202_with_location_and_the_task_is_readable_at_once(
    api: httpx.AsyncClient, alice: Caller, backends: Backends
) -> None:
    response = await submit(api, alice)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert response.headers["location"] == body["status_url"] == f"/tasks/{body['task_id']}"
    task = await api.get(body["status_url"], headers=alice.headers)
    assert task.status_code == 200
    assert task.json()["progress"] == {"pages_done": 0, "pages_failed": 0, "pages_skipped": 0}
    [message] = await backends.jobs.receive(max_messages=10)
    assert message.body == {
        "kind": "crawl",
        "tenant_id": alice.tenant.tenant_id,
        "task_id": body["task_id"],
        "slice": 0,
        "request_id": response.headers["x-request-id"],  # the submit's, for the consumer's log lines
    }


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-scheme"),
        pytest.param({"Authorization": "Bearer"}, id="empty-token"),
        pytest.param({"Authorization": "Bearer not-a-key"}, id="malformed"),
        pytest.param({"Authorization": "Bearer sq_aaaaaaaaaaaa_" + "a" * 48 + "00000000"}, id="bad-checksum"),
    ],
)
async def test_requests_without_a_valid_key_get_401_with_a_bearer_challenge(
    api: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await api.post("/scrape", json=scrape_body(), headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_revoked_key_gets_401_at_once(api: httpx.AsyncClient, alice: Caller, backends: Backends) -> None:
    assert (await submit(api, alice)).status_code == 202  # the API has the key's record parsed now
    await Accounts(backends.kv).revoke_key(alice.tenant.tenant_id, alice.key_id)  # as `scrapeq key revoke` does
    assert_problem(await submit(api, alice), 401)


async def test_a_rotated_key_works_during_the_grace_period_and_not_after(
    api: httpx.AsyncClient, alice: Caller, backends: Backends
) -> None:
    accounts = Accounts(backends.kv)
    new, new_key = await accounts.rotate_key(alice.tenant.tenant_id, alice.key_id, grace_s=3600)
    assert (await submit(api, alice)).status_code == 202
    assert (await api.get("/tasks", headers={"Authorization": f"Bearer {new_key}"})).status_code == 200
    old = await accounts.get_key(alice.tenant.tenant_id, alice.key_id)
    old.expires_at = utcnow() - timedelta(seconds=1)
    await backends.kv.put(f"tenant:{alice.tenant.tenant_id}:key:{alice.key_id}", old.model_dump_json())
    assert_problem(await submit(api, alice), 401)
    actions = [e.action for e in await accounts.audit_log(alice.tenant.tenant_id)]
    assert actions == ["tenant.created", "key.created", "key.created", "key.rotated"]
    assert new.key_id != alice.key_id


async def test_a_knowledge_base_outside_the_key_gets_403(api: httpx.AsyncClient, alice: Caller, bob: Caller) -> None:
    assert_problem(await submit(api, alice, knowledge_base_id="kb_b1"), 403)
    assert_problem(await submit(api, alice, knowledge_base_id="kb_nope"), 403)


async def test_a_key_limited_to_one_knowledge_base_cannot_use_the_others(
    api: httpx.AsyncClient, backends: Backends
) -> None:
    carol = await new_caller(backends, "carol", ["kb_c1", "kb_c2"], key_kbs=["kb_c1"])
    assert (await submit(api, carol, knowledge_base_id="kb_c1")).status_code == 202
    assert_problem(await submit(api, carol, knowledge_base_id="kb_c2"), 403)
    assert_problem(await api.get("/tasks?knowledge_base_id=kb_c2", headers=carol.headers), 403)


async def test_a_domain_outside_the_tenants_allowed_domains_gets_403(
    api: httpx.AsyncClient, backends: Backends
) -> None:
    dave = await new_caller(backends, "dave", ["kb_d"], allowed_domains=["example.org"])
    assert_problem(await submit(api, dave, knowledge_base_id="kb_d", url="https://example.com/"), 403)
    ok = await submit(api, dave, knowledge_base_id="kb_d", url="https://docs.example.org/")
    assert ok.status_code == 202


async def test_unknown_and_malformed_task_ids_get_404(api: httpx.AsyncClient, alice: Caller) -> None:
    for task_id in ("0" * 32, "nope", "../../etc"):
        assert_problem(await api.get(f"/tasks/{task_id}", headers=alice.headers), 404)
        assert_problem(await api.delete(f"/tasks/{task_id}", headers=alice.headers), 404)
        assert_problem(await api.get(f"/tasks/{task_id}/pages", headers=alice.headers), 404)


async def test_another_tenants_task_is_indistinguishable_from_an_unknown_one(
    api: httpx.AsyncClient, alice: Caller, bob: Caller
) -> None:
    task_id = (await submit(api, alice)).json()["task_id"]
    for method, path in (("GET", ""), ("GET", "/pages"), ("DELETE", "")):
        theirs = await api.request(method, f"/tasks/{task_id}{path}", headers=bob.headers)
        assert_problem(theirs, 404)
        missing = await api.request(method, f"/tasks/{'f' * 32}{path}", headers=bob.headers)
        assert theirs.json()["title"] == missing.json()["title"]
    listed = (await api.get("/tasks", headers=bob.headers)).json()
    assert listed == {"tasks": [], "next_cursor": None}
    mine = (await api.get(f"/tasks/{task_id}", headers=alice.headers)).json()
    assert mine["status"] == "queued"


async def test_a_body_over_the_limit_gets_413(api: httpx.AsyncClient, alice: Caller) -> None:
    huge = scrape_body(include_paths=["x" * 400] * 200)
    assert_problem(await api.post("/scrape", json=huge, headers=alice.headers), 413)

    async def chunks():  # no Content-Length: the limit must hold for chunked uploads too
        for _ in range(100):
            yield b" " * 1024

    assert_problem(await api.post("/scrape", content=chunks(), headers=alice.headers), 413)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"url": "ftp://example.com/"}, "url", id="scheme"),
        pytest.param({"url": "not a url"}, "url", id="garbage-url"),
        pytest.param({"url": "http://user:pw@example.com/"}, "url", id="userinfo"),
        pytest.param({"limit": 0}, "limit", id="limit-zero"),
        pytest.param({"limit": 10_001}, "limit", id="limit-too-big"),
        pytest.param({"formats": ["pdf"]}, "formats", id="unknown-format"),
        pytest.param({"include_paths": ["("]}, "include_paths", id="bad-regex"),
        pytest.param({"knowledge_base_id": ""}, "knowledge_base_id", id="empty-kb"),
    ],
)
async def test_invalid_input_gets_422_naming_the_field(
    api: httpx.AsyncClient, alice: Caller, overrides: dict[str, object], field: str
) -> None:
    problem = assert_problem(await submit(api, alice, **overrides), 422, "validation_error")
    assert any(field in err["loc"] for err in problem["errors"])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://0x0a000001/"],
)
async def test_a_url_on_a_refused_address_gets_422_before_anything_is_queued(
    api: httpx.AsyncClient, alice: Caller, backends: Backends, url: str
) -> None:
    assert_problem(await submit(api, alice, url=url), 422, "url_not_allowed")
    assert await backends.jobs.receive(max_messages=10) == []


async def test_bursts_beyond_the_rate_limit_get_429_with_retry_after(
    api: httpx.AsyncClient, alice: Caller, bob: Caller
) -> None:
    statuses = [(await api.get("/tasks", headers=alice.headers)).status_code for _ in range(60)]
    assert statuses[:50] == [200] * 50
    limited = await api.get("/tasks", headers=alice.headers)
    assert_problem(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    assert "ratelimit-policy" in limited.headers
    assert (await api.get("/tasks", headers=bob.headers)).status_code == 200  # other tenants unaffected


async def test_the_same_idempotency_key_and_body_return_the_original_task(
    api: httpx.AsyncClient, alice: Caller, backends: Backends
) -> None:
    headers = {**alice.headers, "Idempotency-Key": "order-42"}
    first = await api.post("/scrape", json=scrape_body(), headers=headers)
    again = await api.post("/scrape", json=scrape_body(), headers=headers)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["task_id"] == first.json()["task_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await backends.jobs.receive(max_messages=10)) == 1


async def reserve_key(
    backends: Backends, caller: Caller, key: str, *, task_id: str, reserved_at: float
) -> IdempotencyRecord:
    """The reservation a request with `key` and the default body makes before it writes its task."""
    digest = submission.request_hash(ScrapeRequest.model_validate(scrape_body()))
    held = IdempotencyRecord(task_id=task_id, request_hash=digest, reserved_at=reserved_at)
    store = TaskStore(backends.kv, backends.reservations)
    assert await store.reserve_idempotency(caller.tenant.tenant_id, key, held, ttl_s=3600) is None
    return held


async def test_a_duplicate_while_the_original_is_being_written_gets_409_then_the_original(
    api: httpx.AsyncClient, alice: Caller, backends: Backends
) -> None:
    """The reservation exists and its task not yet (the original is between its two writes)."""
    held = await reserve_key(backends, alice, "order-44", task_id="f" * 32, reserved_at=time.time())
    headers = {**alice.headers, "Idempotency-Key": "order-44"}
    busy = await api.post("/scrape", json=scrape_body(), headers=headers)
    assert_problem(busy, 409, "idempotency_key_in_use")
    assert busy.headers["retry-after"] == "1"
    body = ScrapeRequest.model_validate(scrape_body())
    await TaskStore(backends.kv).create(Task(task_id=held.task_id, tenant_id=alice.tenant.tenant_id, request=body))
    replay = await api.post("/scrape", json=scrape_body(), headers=headers)
    assert (replay.status_code, replay.json()["task_id"]) == (200, held.task_id)


async def test_an_abandoned_reservation_is_taken_over(
    api: httpx.AsyncClient, alice: Caller, backends: Backends
) -> None:
    """The original died between reserving the key and writing its task: a retry after a while makes the task."""
    old = time.time() - submission.ABANDONED_AFTER_S - 5
    held = await reserve_key(backends, alice, "order-45", task_id="e" * 32, reserved_at=old)
    headers = {**alice.headers, "Idempotency-Key": "order-45"}
    made = await api.post("/scrape", json=scrape_body(), headers=headers)
    assert made.status_code == 202 and made.json()["task_id"] != held.task_id
    again = await api.post("/scrape", json=scrape_body(), headers=headers)
    assert (again.status_code, again.json()["task_id"]) == (200, made.json()["task_id"])


async def test_a_refused_submit_gives_its_idempotency_key_back(
    api: httpx.AsyncClient, alice: Caller, backends: Backends
) -> None:
    """A 422 for a quota no retry can pass leaves no reservation: the same key with a fitting body is a new task."""
    await Accounts(backends.kv).set_limits(alice.tenant.tenant_id, {"max_pages_per_day": 5})
    headers = {**alice.headers, "Idempotency-Key": "order-46"}
    refused = await api.post("/scrape", json=scrape_body(limit=10), headers=headers)
    assert_problem(refused, 422, "quota_exceeded")
    assert await TaskStore(backends.kv).get_idempotency(alice.tenant.tenant_id, "order-46") is None
    assert (await api.post("/scrape", json=scrape_body(limit=5), headers=headers)).status_code == 202


async def test_the_same_idempotency_key_with_another_body_gets_422(api: httpx.AsyncClient, alice: Caller) -> None:
    headers = {**alice.headers, "Idempotency-Key": "order-43"}
    assert (await api.post("/scrape", json=scrape_body(), headers=headers)).status_code == 202
    changed = await api.post("/scrape", json=scrape_body(limit=6), headers=headers)
    assert_problem(changed, 422, "idempotency_key_mismatch")


async def test_idempotency_keys_are_scoped_to_the_tenant(api: httpx.AsyncClient, alice: Caller, bob: Caller) -> None:
    a = await api.post("/scrape", json=scrape_body(), headers={**alice.headers, "Idempotency-Key": "k"})
    b = await api.post(
        "/scrape",
        json=scrape_body(knowledge_base_id="kb_b1"),
        headers={**bob.headers, "Idempotency-Key": "k"},
    )
    assert a.status_code == b.status_code == 202
    assert a.json()["task_id"] != b.json()["task_id"]


@pytest.mark.parametrize("key", ["k" * 256, ""])
async def test_an_idempotency_key_empty_or_over_255_characters_gets_422(
    api: httpx.AsyncClient, alice: Caller, key: str
) -> None:
    headers = {**alice.headers, "Idempotency-Key": key}
    problem = assert_problem(await api.post("/scrape", json=scrape_body(), headers=headers), 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert (
        await api.post("/scrape", json=scrape_body(), headers={**headers, "Idempotency-Key": "k" * 255})
    ).status_code == 202


async def test_a_bad_body_without_credentials_gets_401_not_its_validation_errors(api: httpx.AsyncClient) -> None:
    assert_problem(await api.post("/scrape", json={"url": "nope"}), 401)


async def test_tasks_are_listed_newest_first_with_a_cursor_and_filters(
    api: httpx.AsyncClient, alice: Caller, backends: Backends
) -> None:
    ids = [(await submit(api, alice, knowledge_base_id=f"kb_a{1 + i % 2}")).json()["task_id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/tasks", params=params, headers=alice.headers)).json()
        seen += [t["task_id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    kb2 = (await api.get("/tasks?knowledge_base_id=kb_a2", headers=alice.headers)).json()["tasks"]
    assert [t["task_id"] for t in kb2] == ids[1::2][::-1]
    store = TaskStore(backends.kv)
    task = await store.get(alice.tenant.tenant_id, ids[0])
    assert task is not None
    task.status = TaskStatus.COMPLETED
    await store.save(task)
    done = (await api.get("/tasks?status=completed", headers=alice.headers)).json()["tasks"]
    assert [t["task_id"] for t in done] == [ids[0]]


async def test_pages_are_paginated_in_crawl_order(api: httpx.AsyncClient, alice: Caller, backends: Backends) -> None:
    task_id = (await submit(api, alice)).json()["task_id"]
    store = TaskStore(backends.kv)
    for seq in range(7):
        await store.put_page(alice.tenant.tenant_id, task_id, seq, Page(url=f"http://x.test/{seq}", markdown="# hi"))
    urls: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await api.get(f"/tasks/{task_id}/pages", params=params, headers=alice.headers)).json()
        urls += [p["url"] for p in page["pages"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert urls == [f"http://x.test/{seq}" for seq in range(7)]


async def test_cancel_is_202_while_running_and_idempotent(
    api: httpx.AsyncClient, alice: Caller, backends: Backends
) -> None:
    task_id = (await submit(api, alice)).json()["task_id"]
    first = await api.delete(f"/tasks/{task_id}", headers=alice.headers)
    again = await api.delete(f"/tasks/{task_id}", headers=alice.headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["cancel_requested"] is True
    store = TaskStore(backends.kv)
    task = await store.get(alice.tenant.tenant_id, task_id)
    assert task is not None
    task.status = TaskStatus.CANCELLED
    await store.save(task)
    ended = await api.delete(f"/tasks/{task_id}", headers=alice.headers)
    assert ended.status_code == 200
    assert ended.json()["status"] == "cancelled"


async def test_a_queue_that_refuses_the_job_gets_503_and_the_task_is_not_left_queued(
    api: httpx.AsyncClient, alice: Caller, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_send(body: object, *, delay_s: float = 0) -> None:
        raise RuntimeError("queue down")

    monkeypatch.setattr(backends.jobs, "send", broken_send)
    response = await submit(api, alice)
    assert_problem(response, 503)
    [task] = (await api.get("/tasks", headers=alice.headers)).json()["tasks"]
    assert task["status"] == "failed"
    assert task["error"]["code"] == "enqueue_failed"

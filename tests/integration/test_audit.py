"""`GET /audit` through the API: the tenant's own entries, newest first, by cursor; erasures with their counts and
key; never a secret; the `X-Request-ID` of the change in its entry. And `X-Request-ID` on every kind of answer."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from shared.backends.base import Backends
from shared.settings import Settings
from shared.stores.accounts import Accounts
from tests.conftest import Caller, new_caller

GENERATED = re.compile(r"^req_[0-9a-f]{24}$")
SECRET = re.compile(r"sq_[a-z2-7]{12}_[a-z2-7]{8}|whsec_[A-Za-z0-9+/]{8}")


async def read_all(api: httpx.AsyncClient, caller: Caller, limit: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        answer = await api.get("/audit", params=params, headers=caller.headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["entries"]) <= limit
        entries += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            return entries
    raise AssertionError("the cursor never ended")


async def test_a_tenant_reads_its_own_audit_log_newest_first_page_by_page_with_no_secret(
    api: httpx.AsyncClient, backends: Backends, alice: Caller, bob: Caller
) -> None:
    accounts = Accounts(backends.kv)
    tenant_id = alice.tenant.tenant_id
    secrets_seen = [alice.api_key, alice.tenant.webhook_secrets[0].secret, bob.api_key]
    _, rotated_secret = await accounts.rotate_webhook_secret(tenant_id, overlap_s=60)
    second, second_key = await accounts.create_key(tenant_id, ["kb_a1"])
    _, third_key = await accounts.rotate_key(tenant_id, second.key_id, grace_s=60)
    await accounts.revoke_key(tenant_id, second.key_id)
    await accounts.set_limits(tenant_id, {"max_pages_per_day": 100})
    secrets_seen += [rotated_secret, second_key, third_key]
    erased = await api.delete("/knowledge-bases/kb_a2", headers={**alice.headers, "X-Request-ID": "erase-1"})
    assert erased.status_code == 200, erased.text
    document = await api.delete(
        "/knowledge-bases/kb_a1/documents", params={"url": "https://example.com/a"}, headers=alice.headers
    )
    assert document.status_code == 200, document.text

    everything = await read_all(api, alice, limit=2)
    assert [e["action"] for e in everything] == [
        "document.erased",
        "knowledge_base.erased",
        "tenant.limits_updated",
        "key.revoked",
        "key.rotated",
        "key.created",  # the rotation's new key
        "key.created",
        "webhook_secret.rotated",
        "key.created",
        "tenant.created",
    ]
    assert [e["at"] for e in everything] == sorted((e["at"] for e in everything), reverse=True)
    assert {e["tenant_id"] for e in everything} == {tenant_id}
    assert len({e["event_id"] for e in everything}) == len(everything)
    # The erasure: which key did it, under which request, and how much went.
    kb_erasure = everything[1]
    assert kb_erasure["key_id"] == alice.key_id and kb_erasure["request_id"] == "erase-1"
    assert kb_erasure["detail"]["knowledge_base_id"] == "kb_a2" and "pages" in kb_erasure["detail"]
    assert everything[0]["detail"]["url"] == "https://example.com/a" and GENERATED.match(everything[0]["request_id"])
    # No secret anywhere, in any form the service ever showed.
    text = json.dumps(everything)
    assert not SECRET.search(text)
    assert not any(secret in text for secret in secrets_seen)
    # One page at a time, and a different page size, read the same.
    assert await read_all(api, alice, limit=1000) == everything
    assert await read_all(api, alice, limit=3) == everything

    # Bob sees his own entries only, and Alice's never.
    bobs = await read_all(api, bob, limit=50)
    assert [e["action"] for e in bobs] == ["key.created", "tenant.created"]
    assert {e["tenant_id"] for e in bobs} == {bob.tenant.tenant_id}
    assert not {e["event_id"] for e in bobs} & {e["event_id"] for e in everything}


async def test_a_key_limited_to_a_knowledge_base_does_not_see_the_erasures_of_others(
    api: httpx.AsyncClient, backends: Backends
) -> None:
    carol = await new_caller(backends, "carol", ["kb_c1", "kb_c2"])
    narrow = await new_caller(backends, "carol2", ["kb_x"])  # another tenant: only its own
    assert (await api.delete("/knowledge-bases/kb_c2", headers=carol.headers)).status_code == 200
    record, limited_key = await Accounts(backends.kv).create_key(carol.tenant.tenant_id, ["kb_c1"])
    limited = Caller(tenant=carol.tenant, api_key=limited_key, key_id=record.key_id)
    assert "knowledge_base.erased" in [e["action"] for e in await read_all(api, carol, limit=50)]
    assert "knowledge_base.erased" not in [e["action"] for e in await read_all(api, limited, limit=50)]
    assert [e["action"] for e in await read_all(api, narrow, limit=50)] == ["key.created", "tenant.created"]


async def test_audit_needs_a_key_and_checks_its_parameters(api: httpx.AsyncClient, alice: Caller) -> None:
    assert (await api.get("/audit")).status_code == 401
    assert (await api.get("/audit", params={"limit": "0"}, headers=alice.headers)).status_code == 422
    bad = await api.get("/audit", params={"cursor": "not-a-cursor"}, headers=alice.headers)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_input", bad.text


async def test_every_kind_of_answer_carries_a_request_id(
    api: httpx.AsyncClient, alice: Caller, settings: Settings
) -> None:
    body = {"url": "https://example.com/", "knowledge_base_id": "kb_a1"}
    answers = {
        "health": await api.get("/health"),
        "docs": await api.get("/docs"),
        "404": await api.get("/no/such/route"),
        "401": await api.get("/tasks"),
        "fast path 202": await api.post("/scrape", json=body, headers=alice.headers),
        "422": await api.post("/scrape", json={"url": 1}, headers=alice.headers),
        "413": await api.post("/scrape", content=b"x" * (settings.max_request_body_bytes + 1), headers=alice.headers),
    }
    for name, answer in answers.items():
        assert GENERATED.match(answer.headers.get("x-request-id", "")), name
    assert len({a.headers["x-request-id"] for a in answers.values()}) == len(answers)  # a new one each time
    assert answers["413"].status_code == 413 and answers["fast path 202"].status_code == 202
    echoed = await api.post("/scrape", json=body, headers={**alice.headers, "X-Request-ID": "client:abc-1.2_3"})
    assert echoed.status_code == 202 and echoed.headers["x-request-id"] == "client:abc-1.2_3"
    replaced = await api.get("/health", headers={"X-Request-ID": "bad id"})
    assert GENERATED.match(replaced.headers["x-request-id"])

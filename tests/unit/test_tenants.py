"""API key format, hashing and the stored key record."""

from __future__ import annotations

import json

import pytest

from shared.backends.base import Backends
from shared.errors import InvalidInput, Unauthorized
from shared.stores.accounts import Accounts, hash_key, new_api_key, parse_api_key


def test_new_keys_parse_and_tampered_keys_do_not() -> None:
    key_id, api_key = new_api_key()
    assert parse_api_key(api_key) == key_id
    tampered = api_key[:-9] + ("a" if api_key[-9] != "a" else "b") + api_key[-8:]
    assert parse_api_key(tampered) is None
    assert parse_api_key("sq_" + "a" * 70) is None
    assert parse_api_key("") is None


async def test_keys_are_stored_only_as_hashes(backends: Backends) -> None:
    accounts = Accounts(backends.kv)
    tenant = await accounts.create_tenant("t", ["kb"])
    record, api_key = await accounts.create_key(tenant.tenant_id)
    dump = [await backends.kv.get(info.name) for info in (await backends.kv.list()).keys]
    assert not any(api_key in (value or "") for value in dump)
    stored = json.loads(await backends.kv.get(f"tenant:{tenant.tenant_id}:key:{record.key_id}") or "{}")
    assert stored["key_hash"] == hash_key(api_key)
    assert api_key.startswith(stored["prefix"]) and api_key.endswith(stored["last4"])
    assert len(stored["prefix"]) + len(stored["last4"]) < len(api_key) // 3


async def test_authentication_accepts_the_key_and_nothing_else(backends: Backends) -> None:
    accounts = Accounts(backends.kv)
    tenant = await accounts.create_tenant("t", ["kb"])
    _, api_key = await accounts.create_key(tenant.tenant_id)
    found, _ = await accounts.authenticate(api_key)
    assert found.tenant_id == tenant.tenant_id
    _, other = new_api_key()
    for wrong in (other, api_key.upper(), api_key + "x"):
        with pytest.raises(Unauthorized):
            await accounts.authenticate(wrong)


async def test_a_tenants_limits_change_one_at_a_time_and_are_audited(backends: Backends) -> None:
    accounts = Accounts(backends.kv)
    tenant = await accounts.create_tenant("t", ["kb"])
    await accounts.set_limits(tenant.tenant_id, {"max_concurrent_tasks": 3})
    await accounts.set_limits(tenant.tenant_id, {"max_pages_per_day": 10})
    stored = await accounts.require_tenant(tenant.tenant_id)
    assert stored.limits.model_dump(exclude_none=True) == {"max_concurrent_tasks": 3, "max_pages_per_day": 10}
    await accounts.set_limits(tenant.tenant_id, {"max_concurrent_tasks": None})  # back to the default
    assert (await accounts.require_tenant(tenant.tenant_id)).limits.max_concurrent_tasks is None
    audited = [e for e in await accounts.audit_log(tenant.tenant_id) if e.action == "tenant.limits_updated"]
    assert [e.detail for e in audited][-1] == {"max_pages_per_day": 10}
    for wrong in ({"max_concurrent_tasks": -1}, {"rate_limit_per_s": -1}, {"max_tasks": 3}):
        with pytest.raises(InvalidInput):
            await accounts.set_limits(tenant.tenant_id, wrong)

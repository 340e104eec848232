"""Fixtures shared by every test folder: settings for loopback, in-memory backends, the API and tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from producer.app import create_app
from shared.backends.base import Backends
from shared.backends.factory import open_memory_backends
from shared.settings import Settings
from shared.stores.accounts import Accounts, Tenant

LOOPBACK = "127.0.0.0/8"


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "allow_private_networks": LOOPBACK,
        "fetch_total_timeout_s": 10.0,
        "cancel_check_interval_s": 0.0,
        "queue_retry_base_s": 0.05,
        "queue_retry_max_s": 0.2,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def backends(settings: Settings) -> AsyncIterator[Backends]:
    opened = open_memory_backends(
        visibility_timeout_s=settings.queue_visibility_timeout_s, max_retries=settings.queue_max_retries
    )
    yield opened
    await opened.aclose()


@pytest.fixture
async def api(settings: Settings, backends: Backends) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, backends=backends)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@dataclass(frozen=True)
class Caller:
    """A tenant and one API key of it, with the headers to use the key."""

    tenant: Tenant
    api_key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def new_caller(
    backends: Backends,
    name: str,
    kbs: list[str],
    *,
    key_kbs: list[str] | None = None,
    allowed_domains: list[str] | None = None,
) -> Caller:
    accounts = Accounts(backends.kv)
    tenant = await accounts.create_tenant(name, kbs, allowed_domains=allowed_domains)
    record, api_key = await accounts.create_key(tenant.tenant_id, key_kbs)
    return Caller(tenant=tenant, api_key=api_key, key_id=record.key_id)


@pytest.fixture
async def alice(backends: Backends) -> Caller:
    return await new_caller(backends, "alice", ["kb_a1", "kb_a2"])


@pytest.fixture
async def bob(backends: Backends) -> Caller:
    return await new_caller(backends, "bob", ["kb_b1"])

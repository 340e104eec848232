"""What a scrapeq process under benchmark gets: a fresh data dir with one tenant and API key, and settings that
lift every rate limit and quota (found in `Settings` when the benchmark runs, so limits added later are lifted
too, within each field's own bounds) and let it reach loopback.

Quotas are either raised high (their checks still run on every submit, as for any tenant with a quota) or
switched off (0, "no quota" in `Settings`), to tell what the checks cost.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from annotated_types import Le, Lt
from childproc import clean_env

from shared.backends.factory import open_backends
from shared.settings import PREFIX, Settings
from shared.stores.accounts import Accounts

KB = "kb_bench"
#: Settings that throttle a client or a tenant; the benchmark measures the service, not its limits.
_RATE_LIMITS = re.compile(r"(^|_)rate_limit_(per_s|burst)$")
_QUOTAS = re.compile(r"^max_\w*(tasks|pages_per_\w+)$")
_HIGH = 10**9


def scrapeq_bin() -> str:
    return str(Path(sys.executable).with_name("scrapeq"))


def lifted_limits(*, quotas: str = "high") -> dict[str, str]:
    """`SCRAPEQ_*` values for every rate limit (as high as the field allows) and quota ("high" as well, or
    "off": 0)."""
    env: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        quota = bool(_QUOTAS.search(name))
        if not (quota or _RATE_LIMITS.search(name)) or field.annotation not in (int, float):
            continue
        if quota and quotas == "off":
            env[PREFIX + name.upper()] = "0"
            continue
        high = _HIGH
        for bound in field.metadata:
            if isinstance(bound, Le):
                high = min(high, int(bound.le))  # type: ignore[call-overload]
            elif isinstance(bound, Lt):
                high = min(high, int(bound.lt) - 1)  # type: ignore[call-overload]
        env[PREFIX + name.upper()] = str(high)
    return env


def service_env(data_dir: Path, *, quotas: str = "high", **extra: str) -> dict[str, str]:
    return clean_env(
        SCRAPEQ_DATA_DIR=str(data_dir),
        SCRAPEQ_ALLOW_PRIVATE_NETWORKS="127.0.0.0/8",
        **lifted_limits(quotas=quotas),
        **extra,
    )


def fresh_tenant(data_dir: Path) -> tuple[str, str]:
    """An empty `data_dir` with one tenant (knowledge base `KB`) and a key: (tenant id, API key)."""
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)

    async def create() -> tuple[str, str]:
        backends = open_backends(Settings(data_dir=data_dir))
        try:
            accounts = Accounts(backends.kv)
            tenant = await accounts.create_tenant("bench", [KB])
            _, api_key = await accounts.create_key(tenant.tenant_id)
            return tenant.tenant_id, api_key
        finally:
            await backends.aclose()

    return asyncio.run(create())


def scrape_body(url: str, *, limit: int = 1) -> dict[str, Any]:
    return {"url": url, "knowledge_base_id": KB, "limit": limit}

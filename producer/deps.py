"""FastAPI dependencies: settings, backends, stores and the authenticated caller, as `Annotated` aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from producer.limits import TokenBucketLimiter
from shared.backends import Backends
from shared.errors import RateLimited, Unauthorized
from shared.events import EventLog
from shared.ports import JobQueue
from shared.settings import Settings
from shared.taskstore import TaskStore
from shared.tenants import Accounts, ApiKey, Tenant

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_backends(request: Request) -> Backends[JobQueue]:
    backends: Backends[JobQueue] = request.app.state.backends
    return backends


def get_tasks(backends: Annotated[Backends[JobQueue], Depends(get_backends)]) -> TaskStore:
    return TaskStore(backends.kv)


def get_accounts(backends: Annotated[Backends[JobQueue], Depends(get_backends)]) -> Accounts:
    return Accounts(backends.kv)


SettingsDep = Annotated[Settings, Depends(get_settings)]
BackendsDep = Annotated[Backends[JobQueue], Depends(get_backends)]
TasksDep = Annotated[TaskStore, Depends(get_tasks)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    tenant: Tenant
    key: ApiKey

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id


async def authenticate(request: Request, response: Response, accounts: AccountsDep) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("missing bearer token", headers=_CHALLENGE)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected 'Authorization: Bearer <api key>'", headers=_CHALLENGE)
    try:
        tenant, key = await accounts.authenticate(token.strip())
    except Unauthorized as exc:
        raise Unauthorized(exc.detail, headers=_INVALID) from None
    limiter: TokenBucketLimiter = request.app.state.rate_limiter
    decision = limiter.take(key.key_id)
    if not decision.allowed:
        raise RateLimited(f"rate limit exceeded; retry in {decision.retry_after_s} s", headers=decision.headers())
    response.headers.update(decision.headers())
    return Principal(tenant=tenant, key=key)


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def get_events(
    backends: Annotated[Backends[JobQueue], Depends(get_backends)], settings: Annotated[Settings, Depends(get_settings)]
) -> EventLog:
    return EventLog(backends.kv, backends.jobs, retention_s=settings.event_retention_s)


EventsDep = Annotated[EventLog, Depends(get_events)]

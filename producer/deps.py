"""FastAPI dependencies: settings, backends, stores and the authenticated caller, as `Annotated` aliases.

Every dependency is `async def`, even the trivial ones: FastAPI runs a plain `def` dependency in a worker
thread, and those hops made up most of a request's cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from producer.limits import note_decision, rate_policies, refusal
from shared.backends import Backends
from shared.errors import Unauthorized
from shared.events import EventLog
from shared.ports import JobQueue
from shared.ratelimit import Limiters
from shared.settings import Settings
from shared.taskstore import TaskStore
from shared.tenants import Accounts, ApiKey, Tenant

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_backends(request: Request) -> Backends[JobQueue]:
    backends: Backends[JobQueue] = request.app.state.backends
    return backends


async def get_tasks(backends: Annotated[Backends[JobQueue], Depends(get_backends)]) -> TaskStore:
    return TaskStore(backends.kv)


async def get_accounts(backends: Annotated[Backends[JobQueue], Depends(get_backends)]) -> Accounts:
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


async def authenticate(request: Request, accounts: AccountsDep, settings: SettingsDep) -> Principal:
    """The caller behind the bearer token, within its key's and its tenant's rate limits."""
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
    limiters: Limiters = request.app.state.limiters
    key_policy, tenant_policy = rate_policies(settings, tenant)
    for limiter, subject, policy in (
        (limiters.key, key.key_id, key_policy),
        (limiters.tenant, tenant.tenant_id, tenant_policy),
    ):
        decision = await limiter.take(subject, policy)
        note_decision(request.scope, decision)
        if not decision.allowed:
            raise refusal(decision)
    return Principal(tenant=tenant, key=key)


PrincipalDep = Annotated[Principal, Depends(authenticate)]


async def get_events(
    backends: Annotated[Backends[JobQueue], Depends(get_backends)], settings: Annotated[Settings, Depends(get_settings)]
) -> EventLog:
    return EventLog(backends.kv, backends.jobs, retention_s=settings.event_retention_s)


EventsDep = Annotated[EventLog, Depends(get_events)]

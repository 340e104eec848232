"""What a request needs (settings, storage, stores, rate limiters, the authenticated caller) as FastAPI
dependencies that each read only the `Request`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from producer.middleware import note_decision, rate_policies, refusal
from shared import tracing
from shared.backends.base import Backends
from shared.errors import Unauthorized
from shared.guard import AddressPolicy
from shared.ports import JobQueue
from shared.ratelimit import Limiters
from shared.settings import Settings
from shared.stores.accounts import Accounts, ApiKey, Tenant
from shared.stores.events import EventLog
from shared.stores.tasks import TaskStore

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


@dataclass(frozen=True)
class Services:
    """The app's settings, storage and the stores over it, built once when the backends are open.

    The stores are built once per app (`Services`), not per request, and no dependency depends on another: FastAPI
    solves every level of a dependency tree anew for each request, and those levels used to cost more than the
    work a submit does. Every dependency is `async def`, since FastAPI runs a plain `def` one in a worker thread.
    """

    settings: Settings
    backends: Backends[JobQueue]
    limiters: Limiters
    tasks: TaskStore
    accounts: Accounts
    events: EventLog
    #: Which addresses a submitted crawl or webhook URL may name (`SCRAPEQ_ALLOW_PRIVATE_NETWORKS`).
    address_policy: AddressPolicy

    @classmethod
    def build(cls, settings: Settings, backends: Backends[JobQueue], limiters: Limiters) -> Services:
        return cls(
            settings=settings,
            backends=backends,
            limiters=limiters,
            tasks=TaskStore(backends.kv, backends.reservations),
            accounts=Accounts(backends.kv),
            events=EventLog(backends.kv, backends.jobs, retention_s=settings.event_retention_s),
            address_policy=AddressPolicy(settings.allow_private_networks),
        )


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_settings(request: Request) -> Settings:
    return services_of(request).settings


async def get_backends(request: Request) -> Backends[JobQueue]:
    return services_of(request).backends


async def get_tasks(request: Request) -> TaskStore:
    return services_of(request).tasks


async def get_events(request: Request) -> EventLog:
    return services_of(request).events


SettingsDep = Annotated[Settings, Depends(get_settings)]
BackendsDep = Annotated[Backends[JobQueue], Depends(get_backends)]
TasksDep = Annotated[TaskStore, Depends(get_tasks)]
EventsDep = Annotated[EventLog, Depends(get_events)]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    tenant: Tenant
    key: ApiKey

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id


async def authenticate(request: Request) -> Principal:
    """The caller behind the bearer token, within its key's and its tenant's rate limits."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("missing bearer token", headers=_CHALLENGE)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected 'Authorization: Bearer <api key>'", headers=_CHALLENGE)
    services = services_of(request)
    try:
        tenant, key = await services.accounts.authenticate(token.strip())
    except Unauthorized as exc:
        raise Unauthorized(exc.detail, headers=_INVALID) from None
    tracing.note(tenant_id=tenant.tenant_id)  # the access line names the tenant, refused or not
    limiters = services.limiters
    key_policy, tenant_policy = rate_policies(services.settings, tenant)
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

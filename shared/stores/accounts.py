"""Tenants, API keys and the audit log: records, key format and the operations on them (over the KV port)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from shared import keys, logformat, tracing
from shared.errors import InvalidInput, NotFound, Unauthorized
from shared.models import utcnow
from shared.ports import KeyValueStore, scan
from shared.stores.tasks import paginate

R = TypeVar("R", "Tenant", "ApiKey")
KEY_PATTERN = re.compile(r"^sq_([a-z2-7]{12})_([a-z2-7]{48})([0-9a-f]{8})$")


class WebhookSecret(BaseModel):
    secret: str
    created_at: datetime = Field(default_factory=utcnow)
    #: During a rotation the old secret keeps signing until then.
    expires_at: datetime | None = None


class TenantLimits(BaseModel):
    """A tenant's own rate limit and quotas; None keeps the service's default (`SCRAPEQ_*` settings)."""

    #: Requests per second, for the tenant as a whole and for each of its keys.
    rate_limit_per_s: float | None = Field(default=None, gt=0)
    #: Requests at once (default: 5 seconds' worth of `rate_limit_per_s`).
    rate_limit_burst: int | None = Field(default=None, ge=1)
    #: Tasks queued or running at once (0: no quota).
    max_concurrent_tasks: int | None = Field(default=None, ge=0)
    #: Pages reserved per UTC day: the sum of `limit` over the tasks submitted that day (0: no quota).
    max_pages_per_day: int | None = Field(default=None, ge=0)


class Tenant(BaseModel):
    tenant_id: str
    name: str
    knowledge_bases: list[str]
    webhook_secrets: list[WebhookSecret]
    #: If set, only these domains (and their subdomains) may be crawled.
    allowed_domains: list[str] | None = None
    limits: TenantLimits = Field(default_factory=TenantLimits)
    created_at: datetime = Field(default_factory=utcnow)

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets deliveries are signed with now: the newest first, then any still in their overlap."""
        active = [s for s in self.webhook_secrets if s.expires_at is None or s.expires_at > now]
        return [s.secret for s in sorted(active, key=lambda s: s.created_at, reverse=True)]


class ApiKey(BaseModel):
    """An API key as stored: never the key itself, only its hash and a displayable prefix."""

    key_id: str
    tenant_id: str
    key_hash: str
    prefix: str
    last4: str
    #: Empty: every knowledge base of the tenant.
    knowledge_bases: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    expires_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def may_use(self, tenant: Tenant, kb_id: str) -> bool:
        allowed = self.knowledge_bases or tenant.knowledge_bases
        return kb_id in allowed and kb_id in tenant.knowledge_bases


class AuditEvent(BaseModel):
    """One audited change: what (`action`), when, by which API key (None: an operator's command), with the
    request's `X-Request-ID`; `detail` holds counts and ids, never a secret (`audit` masks any that slips in)."""

    event_id: str
    tenant_id: str
    action: str
    at: datetime = Field(default_factory=utcnow)
    key_id: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class AuditPage(BaseModel):
    """`GET /audit`: the tenant's audit entries, newest first."""

    entries: list[AuditEvent]
    next_cursor: str | None


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _b32(n_bytes: int) -> str:
    return base64.b32encode(secrets.token_bytes(n_bytes)).decode().lower().rstrip("=")


def _checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode()):08x}"


def new_api_key() -> tuple[str, str]:
    """A fresh (key id, api key).

    An API key is `sq_<key id>_<secret><checksum>`; only its SHA-256 is stored. The checksum lets a malformed
    key be refused before any storage lookup; the key id lets the owner list and revoke keys without the secret.
    """
    key_id = _b32(10)[:12]
    body = f"sq_{key_id}_{_b32(30)[:48]}"
    return key_id, body + _checksum(body)


def parse_api_key(api_key: str) -> str | None:
    """The key id of a well-formed key with a valid checksum, else None."""
    match = KEY_PATTERN.match(api_key)
    if match is None:
        return None
    body = api_key[:-8]
    if not hmac.compare_digest(_checksum(body), match.group(3)):
        return None
    return match.group(1)


#: Entries each of `Accounts`' caches holds at most (the oldest go first).
CACHE_SIZE = 1024
V = TypeVar("V")


def _remember(cache: dict[str, V], key: str, value: V) -> None:
    if len(cache) >= CACHE_SIZE:
        del cache[next(iter(cache))]
    cache[key] = value


class Accounts:
    """Tenant, key and audit operations over a KV store."""

    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv
        self._last_audit_ns = 0
        # What `authenticate` keeps between requests: parsed records keyed by their stored text (a changed
        # record is parsed again), and the tenant and key id a known API key points to.
        self._parsed: dict[str, Tenant | ApiKey] = {}
        self._pointers: dict[str, str] = {}

    async def create_tenant(
        self, name: str, knowledge_bases: list[str], *, allowed_domains: list[str] | None = None
    ) -> Tenant:
        tenant = Tenant(
            tenant_id="tn_" + _b32(10)[:16],
            name=name,
            knowledge_bases=list(dict.fromkeys(knowledge_bases)),
            webhook_secrets=[WebhookSecret(secret=new_webhook_secret())],
            allowed_domains=allowed_domains,
        )
        await self.kv.put(keys.tenant(tenant.tenant_id), tenant.model_dump_json())
        await self.kv.put(keys.tenant_index(tenant.tenant_id), tenant.name)
        await self.audit(tenant.tenant_id, "tenant.created", detail={"name": name})
        return tenant

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        raw = await self.kv.get(keys.tenant(tenant_id))
        return Tenant.model_validate_json(raw) if raw else None

    async def require_tenant(self, tenant_id: str) -> Tenant:
        tenant = await self.get_tenant(tenant_id)
        if tenant is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        return tenant

    async def list_tenants(self) -> list[Tenant]:
        found: list[Tenant] = []
        async for info in scan(self.kv, keys.TENANT_INDEX_PREFIX):
            if tenant := await self.get_tenant(info.name.removeprefix(keys.TENANT_INDEX_PREFIX)):
                found.append(tenant)
        return found

    async def rotate_webhook_secret(self, tenant_id: str, *, overlap_s: float) -> tuple[Tenant, str]:
        """A new signing secret; the current ones keep signing too for `overlap_s` seconds, then stop."""
        tenant = await self.require_tenant(tenant_id)
        now = utcnow()
        until = now + timedelta(seconds=overlap_s)
        for old in tenant.webhook_secrets:
            if old.expires_at is None or old.expires_at > until:
                old.expires_at = until
        secret = new_webhook_secret()
        tenant.webhook_secrets = [s for s in tenant.webhook_secrets if s.expires_at is None or s.expires_at > now]
        tenant.webhook_secrets.append(WebhookSecret(secret=secret, created_at=now))
        await self.kv.put(keys.tenant(tenant_id), tenant.model_dump_json())
        await self.audit(tenant_id, "webhook_secret.rotated", detail={"overlap_s": overlap_s})
        return tenant, secret

    async def set_limits(self, tenant_id: str, changes: dict[str, Any]) -> Tenant:
        """Change some of a tenant's limits (a None value restores the service default)."""
        unknown = sorted(changes.keys() - TenantLimits.model_fields.keys())
        if unknown:
            raise InvalidInput(f"unknown limits: {unknown}")
        tenant = await self.require_tenant(tenant_id)
        try:
            tenant.limits = TenantLimits.model_validate({**tenant.limits.model_dump(), **changes})
        except ValidationError as exc:
            reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise InvalidInput(f"invalid limits: {reasons}") from None
        await self.kv.put(keys.tenant(tenant_id), tenant.model_dump_json())
        await self.audit(tenant_id, "tenant.limits_updated", detail=tenant.limits.model_dump(exclude_none=True))
        return tenant

    async def create_key(
        self, tenant_id: str, knowledge_bases: list[str] | None = None, *, expires_at: datetime | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key; returns the record and the key itself (shown once, never stored)."""
        tenant = await self.require_tenant(tenant_id)
        unknown = set(knowledge_bases or ()) - set(tenant.knowledge_bases)
        if unknown:
            raise InvalidInput(f"knowledge bases not owned by the tenant: {sorted(unknown)}")
        key_id, api_key = new_api_key()
        record = ApiKey(
            key_id=key_id,
            tenant_id=tenant_id,
            key_hash=hash_key(api_key),
            prefix=api_key[:16],
            last4=api_key[-4:],
            knowledge_bases=list(knowledge_bases or ()),
            expires_at=expires_at,
        )
        await self.kv.put(keys.api_key(tenant_id, key_id), record.model_dump_json())
        await self.kv.put(keys.api_key_lookup(record.key_hash), f"{tenant_id}:{key_id}")
        await self.audit(tenant_id, "key.created", key_id=key_id, detail={"knowledge_bases": record.knowledge_bases})
        return record, api_key

    async def get_key(self, tenant_id: str, key_id: str) -> ApiKey:
        raw = await self.kv.get(keys.api_key(tenant_id, key_id))
        if raw is None:
            raise NotFound(f"no key {key_id!r} for tenant {tenant_id!r}")
        return ApiKey.model_validate_json(raw)

    async def list_keys(self, tenant_id: str, *, prefix: str = "") -> list[ApiKey]:
        found: list[ApiKey] = []
        async for info in scan(self.kv, keys.api_keys_prefix(tenant_id)):
            raw = await self.kv.get(info.name)
            if raw and (record := ApiKey.model_validate_json(raw)).prefix.startswith(prefix):
                found.append(record)
        return found

    async def revoke_key(self, tenant_id: str, key_id: str) -> ApiKey:
        record = await self.get_key(tenant_id, key_id)
        if record.revoked_at is None:
            record.revoked_at = utcnow()
            await self.kv.put(keys.api_key(tenant_id, key_id), record.model_dump_json())
            await self.audit(tenant_id, "key.revoked", key_id=key_id)
        return record

    async def rotate_key(self, tenant_id: str, key_id: str, *, grace_s: float) -> tuple[ApiKey, str]:
        """A new key with the same scope; the old one keeps working for `grace_s` seconds."""
        old = await self.get_key(tenant_id, key_id)
        if not old.active(utcnow()):
            raise InvalidInput(f"key {key_id!r} is revoked or expired")
        new, api_key = await self.create_key(tenant_id, old.knowledge_bases)
        old.expires_at = utcnow() + timedelta(seconds=grace_s)
        await self.kv.put(keys.api_key(tenant_id, key_id), old.model_dump_json())
        await self.audit(tenant_id, "key.rotated", key_id=key_id, detail={"new_key_id": new.key_id, "grace_s": grace_s})
        return new, api_key

    async def authenticate(self, api_key: str) -> tuple[Tenant, ApiKey]:
        """The tenant and key behind a bearer token, or `Unauthorized` (same answer for every failure)."""
        pointer = self._pointers.get(api_key)
        if pointer is None:
            if parse_api_key(api_key) is None:
                raise Unauthorized("invalid API key")
            pointer = await self.kv.get(keys.api_key_lookup(hash_key(api_key)))
            if pointer is None:
                raise Unauthorized("invalid API key")
            # Written once when the key is created, never changed: it can be kept (unknown keys are not).
            _remember(self._pointers, api_key, pointer)
        tenant_id, key_id = pointer.split(":", 1)
        raw_key = await self.kv.get(keys.api_key(tenant_id, key_id))
        raw_tenant = await self.kv.get(keys.tenant(tenant_id))
        if raw_key is None or raw_tenant is None:
            raise Unauthorized("invalid API key")
        record = self._parse(ApiKey, raw_key)
        if not record.active(utcnow()):
            raise Unauthorized("API key revoked or expired")
        return self._parse(Tenant, raw_tenant), record

    def _parse(self, model: type[R], raw: str) -> R:
        """`model` from its stored text, parsed once while the text stays the same. The records are shared
        between requests: read them, never change them."""
        found = self._parsed.get(raw)
        if isinstance(found, model):
            return found
        parsed = model.model_validate_json(raw)
        _remember(self._parsed, raw, parsed)
        return parsed

    async def audit(
        self, tenant_id: str, action: str, *, key_id: str | None = None, detail: dict[str, Any] | None = None
    ) -> None:
        event = AuditEvent(
            event_id=secrets.token_hex(8),
            tenant_id=tenant_id,
            action=action,
            key_id=key_id,
            request_id=tracing.request_id(),
            detail=logformat.masked_fields(detail or {}),
        )
        # Nanoseconds keep events of one burst (create, then rotate) in the order they happened.
        at_ns = max(time.time_ns(), self._last_audit_ns + 1)
        self._last_audit_ns = at_ns
        await self.kv.put(keys.audit(tenant_id, at_ns, event.event_id), event.model_dump_json())

    async def audit_log(self, tenant_id: str) -> list[AuditEvent]:
        """Every audit entry of the tenant, oldest first."""
        events: list[AuditEvent] = []
        async for info in scan(self.kv, keys.audit_prefix(tenant_id)):
            if raw := await self.kv.get(info.name):
                events.append(AuditEvent.model_validate_json(raw))
        # Listed newest first: reversed, a burst of one microsecond keeps its order; the sort places older entries.
        return sorted(reversed(events), key=lambda event: event.at)

    async def audit_page(
        self,
        tenant_id: str,
        *,
        cursor: str | None,
        limit: int,
        visible: Callable[[AuditEvent], bool] | None = None,
    ) -> AuditPage:
        """Up to `limit` of the tenant's audit entries, newest first, after `cursor` (those `visible` keeps)."""

        async def load(key: str) -> AuditEvent | None:
            raw = await self.kv.get(key)
            event = AuditEvent.model_validate_json(raw) if raw else None
            return event if event is not None and (visible is None or visible(event)) else None

        entries, next_cursor = await paginate(self.kv, keys.audit_prefix(tenant_id), load, cursor=cursor, limit=limit)
        return AuditPage(entries=entries, next_cursor=next_cursor)

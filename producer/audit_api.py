"""`GET /audit`: the caller's tenant's audit log (keys, secrets, limits, erasures), newest first."""

from __future__ import annotations

from fastapi import APIRouter

from producer.deps import BackendsDep, PrincipalDep
from producer.problems import problem_responses
from producer.routes import AUTHENTICATED, CursorQuery, PageLimit
from shared.stores.accounts import Accounts, AuditEvent, AuditPage

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=AuditPage, responses=problem_responses(*AUTHENTICATED))
async def audit_log(
    principal: PrincipalDep, backends: BackendsDep, cursor: CursorQuery = None, limit: PageLimit = 50
) -> AuditPage:
    """What was changed in the tenant and by which key: tenant creation and limits, API keys created, rotated
    and revoked, webhook secret rotations, erasures of knowledge bases and documents (with their counts). Newest
    first, `limit` at a time. An entry never holds a secret. A key limited to some knowledge bases does not see
    the erasures of the others."""

    def visible(event: AuditEvent) -> bool:
        kb = event.detail.get("knowledge_base_id")
        return not isinstance(kb, str) or principal.key.may_use(principal.tenant, kb)

    accounts = Accounts(backends.kv)
    return await accounts.audit_page(principal.tenant_id, cursor=cursor, limit=limit, visible=visible)

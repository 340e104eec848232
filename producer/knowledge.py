"""Knowledge bases as first-class objects: `GET /knowledge-bases` and the documents of one, the latest version of
each URL across every task of that knowledge base."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from producer.deps import BackendsDep, Principal, PrincipalDep
from producer.problems import problem_responses
from producer.routes import AUTHENTICATED, CursorQuery, PageLimit
from shared import urls
from shared.errors import Forbidden, InvalidInput
from shared.models import KB_ID_PATTERN, Change, Page
from shared.stores.accounts import Accounts
from shared.stores.documents import DocumentStore
from shared.stores.erasure import Eraser


class DocumentPublic(Page):
    """A knowledge base's latest version of one URL as the API shows it (out): its page, and where and when."""

    task_id: str
    first_seen_at: datetime
    changed_at: datetime
    change: Change


class DocumentList(BaseModel):
    documents: list[DocumentPublic]
    next_cursor: str | None


class KnowledgeBaseSummary(BaseModel):
    knowledge_base_id: str
    documents: int
    #: Stored size of the documents' latest pages.
    bytes: int
    last_crawled_at: datetime | None


class KnowledgeBaseList(BaseModel):
    knowledge_bases: list[KnowledgeBaseSummary]


router = APIRouter(tags=["knowledge bases"])

KbPath = Annotated[str, Path(pattern=KB_ID_PATTERN, description="A knowledge base the API key may use")]
KB_ROUTE = problem_responses(*AUTHENTICATED, 403)


@router.get("/knowledge-bases", response_model=KnowledgeBaseList, responses=problem_responses(*AUTHENTICATED))
async def list_knowledge_bases(principal: PrincipalDep, backends: BackendsDep) -> KnowledgeBaseList:
    """The knowledge bases this API key may use, with their document count, size and last crawl."""
    documents = DocumentStore(backends.kv)
    summaries = []
    for kb in principal.tenant.knowledge_bases:
        if principal.key.may_use(principal.tenant, kb):
            stats = await documents.stats(principal.tenant_id, kb)
            summaries.append(
                KnowledgeBaseSummary(
                    knowledge_base_id=kb,
                    documents=stats.documents,
                    bytes=stats.bytes,
                    last_crawled_at=stats.last_crawled_at,
                )
            )
    return KnowledgeBaseList(knowledge_bases=summaries)


@router.get("/knowledge-bases/{kb}/documents", response_model=DocumentList, responses=KB_ROUTE)
async def list_documents(
    kb: KbPath,
    principal: PrincipalDep,
    backends: BackendsDep,
    cursor: CursorQuery = None,
    limit: PageLimit = 50,
    changed_since: Annotated[datetime | None, Query(description="only documents changed after this time")] = None,
    url: Annotated[str | None, Query(max_length=urls.MAX_URL_LENGTH, description="only this URL's document")] = None,
) -> DocumentList:
    """The latest version of each URL the knowledge base holds (one entry per normalised URL): its page, the
    task that stored it, when it was first seen and last changed, and its last `change` (`removed`: the URL
    answered 404 or 410)."""
    _check_usable(principal, kb)
    documents = DocumentStore(backends.kv)
    if changed_since is not None and changed_since.tzinfo is None:
        raise InvalidInput("changed_since needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    if url is not None:
        document = await documents.get(principal.tenant_id, kb, _normal_url(url))
        found = []
        if document is not None and (changed_since is None or document.changed_at > changed_since):
            view = await documents.view(principal.tenant_id, document)
            found = [view] if view is not None else []
        return DocumentList.model_validate({"documents": found, "next_cursor": None})
    views, next_cursor = await documents.list_views(
        principal.tenant_id, kb, cursor=cursor, limit=limit, changed_since=changed_since
    )
    return DocumentList.model_validate({"documents": views, "next_cursor": next_cursor})


NDJSON = "application/x-ndjson"


@router.get(
    "/knowledge-bases/{kb}/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One document per line, as in `documents` (JSON lines)",
            "content": {NDJSON: {"schema": {"type": "string"}}},
        },
        **KB_ROUTE,
    },
)
async def export_documents(kb: KbPath, principal: PrincipalDep, backends: BackendsDep) -> StreamingResponse:
    """Every document of the knowledge base as JSON lines, streamed (no page size limit)."""
    _check_usable(principal, kb)
    documents = DocumentStore(backends.kv)
    tenant_id = principal.tenant_id

    async def lines() -> AsyncIterator[bytes]:
        async for view in documents.export(tenant_id, kb):
            yield json.dumps(view, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"

    headers = {"Content-Disposition": f'attachment; filename="{kb}.ndjson"'}
    return StreamingResponse(lines(), media_type=NDJSON, headers=headers)


class Erasure(BaseModel):
    """What an erasure deleted (out)."""

    knowledge_base_id: str
    url: str | None = None
    tasks: int
    pages: int
    documents: int
    events: int
    idempotency_keys: int
    keys: int


@router.delete("/knowledge-bases/{kb}", response_model=Erasure, responses=KB_ROUTE)
async def erase_knowledge_base(kb: KbPath, principal: PrincipalDep, backends: BackendsDep) -> Erasure:
    """Erase everything of the knowledge base (GDPR/LGPD): its tasks, pages, documents, events and
    Idempotency-Keys. A crawl of it still running stops at its next page and purges what it stored. Idempotent;
    recorded in the tenant's audit log (which key, when, how much)."""
    _check_usable(principal, kb)
    report = await Eraser(backends.kv).erase_knowledge_base(principal.tenant_id, kb)
    detail = {"knowledge_base_id": kb, **report.counts()}
    await Accounts(backends.kv).audit(
        principal.tenant_id, "knowledge_base.erased", key_id=principal.key.key_id, detail=detail
    )
    return Erasure(knowledge_base_id=kb, **report.counts())


@router.delete("/knowledge-bases/{kb}/documents", response_model=Erasure, responses=KB_ROUTE)
async def erase_document(
    kb: KbPath,
    principal: PrincipalDep,
    backends: BackendsDep,
    url: Annotated[str, Query(max_length=urls.MAX_URL_LENGTH, description="the document's URL")],
) -> Erasure:
    """Erase one document: its entry and every stored version of that URL in the knowledge base's tasks.
    Idempotent; recorded in the audit log."""
    _check_usable(principal, kb)
    normal = _normal_url(url)
    report = await Eraser(backends.kv).erase_document(principal.tenant_id, kb, normal)
    detail = {"knowledge_base_id": kb, "url": normal, **report.counts()}
    await Accounts(backends.kv).audit(
        principal.tenant_id, "document.erased", key_id=principal.key.key_id, detail=detail
    )
    return Erasure(knowledge_base_id=kb, url=normal, **report.counts())


def _check_usable(principal: Principal, kb: str) -> None:
    if not principal.key.may_use(principal.tenant, kb):
        raise Forbidden(f"knowledge base {kb!r} is not allowed for this API key")


def _normal_url(url: str) -> str:
    try:
        return urls.validate_submitted_url(url)
    except ValueError as exc:
        raise InvalidInput(f"url: {exc}") from None

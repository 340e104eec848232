"""A knowledge base's documents: per normalised URL, which task's page is its latest version, with the hash and
validators a re-crawl compares against (key layout in the README)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import keys
from shared.backends.kvlimits import MAX_VALUE_BYTES
from shared.models import Document, SitemapReport
from shared.ports import KeyValueStore, scan
from shared.stores.tasks import decode_page, encode_page, get_page_json, paginate
from shared.urls import url_key


@dataclass(frozen=True)
class KnowledgeBaseStats:
    documents: int
    bytes: int
    last_crawled_at: datetime | None


@dataclass(frozen=True)
class Discovery:
    """What a sitemap discovery found, kept with the knowledge base so a crawl within `max_age` reuses it."""

    urls: list[str]
    report: SitemapReport
    #: Seconds since the epoch.
    fetched_at: float


class DocumentStore:
    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv

    async def get(self, tenant_id: str, kb_id: str, url: str) -> Document | None:
        raw = await self.kv.get(keys.document(tenant_id, kb_id, url_key(url)))
        return Document.model_validate_json(raw) if raw else None

    async def put(self, tenant_id: str, kb_id: str, document: Document, *, page_bytes: int) -> None:
        metadata = {"bytes": page_bytes, "fetched_at": document.fetched_at.timestamp()}
        key = keys.document(tenant_id, kb_id, url_key(document.url))
        await self.kv.put(key, document.model_dump_json(), metadata=metadata)

    async def discovery(self, tenant_id: str, kb_id: str, digest: str) -> Discovery | None:
        stored = await self.kv.get(keys.sitemap_discovery(tenant_id, kb_id, digest))
        if stored is None:
            return None
        data = json.loads(decode_page(stored))
        report = SitemapReport.model_validate(data["report"])
        return Discovery(urls=data["urls"], report=report, fetched_at=data["fetched_at"])

    async def put_discovery(self, tenant_id: str, kb_id: str, digest: str, discovery: Discovery) -> bool:
        """Keep the discovery (compressed); one too large for a KV value is not kept (it is only a cache)."""
        raw = {"fetched_at": discovery.fetched_at, "urls": discovery.urls, "report": discovery.report.model_dump()}
        value = encode_page(json.dumps(raw, separators=(",", ":")))
        if len(value) > MAX_VALUE_BYTES:
            return False
        await self.kv.put(keys.sitemap_discovery(tenant_id, kb_id, digest), value)
        return True

    async def stats(self, tenant_id: str, kb_id: str) -> KnowledgeBaseStats:
        count = size = 0
        latest: float | None = None
        async for info in scan(self.kv, keys.documents_prefix(tenant_id, kb_id)):
            count += 1
            meta = info.metadata or {}
            size += int(meta.get("bytes", 0) or 0)
            fetched = meta.get("fetched_at")
            if isinstance(fetched, int | float):
                latest = fetched if latest is None else max(latest, fetched)
        last = datetime.fromtimestamp(latest, UTC) if latest is not None else None
        return KnowledgeBaseStats(documents=count, bytes=size, last_crawled_at=last)

    async def page_json(self, tenant_id: str, document: Document) -> str | None:
        """The stored page of the document's latest version."""
        return await get_page_json(self.kv, keys.page(tenant_id, document.task_id, document.seq))

    async def view(self, tenant_id: str, document: Document) -> dict[str, Any] | None:
        """The document as the API shows it: its page's fields, then where and when it was seen."""
        raw = await self.page_json(tenant_id, document)
        if raw is None:
            return None  # its task was erased meanwhile
        page: dict[str, Any] = json.loads(raw)
        return {
            **page,
            "url": document.url,
            "task_id": document.task_id,
            "first_seen_at": document.first_seen_at.isoformat().replace("+00:00", "Z"),
            "changed_at": document.changed_at.isoformat().replace("+00:00", "Z"),
            "change": document.change.value,
        }

    async def export(self, tenant_id: str, kb_id: str) -> AsyncIterator[dict[str, Any]]:
        """Every document's view, in key order."""
        async for info in scan(self.kv, keys.documents_prefix(tenant_id, kb_id)):
            raw = await self.kv.get(info.name)
            if raw is not None:
                view = await self.view(tenant_id, Document.model_validate_json(raw))
                if view is not None:
                    yield view

    async def list_views(
        self,
        tenant_id: str,
        kb_id: str,
        *,
        cursor: str | None,
        limit: int,
        changed_since: datetime | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        async def load(key: str) -> dict[str, Any] | None:
            raw = await self.kv.get(key)
            if raw is None:
                return None
            document = Document.model_validate_json(raw)
            if changed_since is not None and document.changed_at <= changed_since:
                return None
            return await self.view(tenant_id, document)

        return await paginate(
            self.kv,
            keys.documents_prefix(tenant_id, kb_id),
            load,
            cursor=cursor,
            limit=limit,
            size=lambda view: len(json.dumps(view)),
        )

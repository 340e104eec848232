"""Erasure (GDPR/LGPD) of a knowledge base with everything of it, or of one document with all its stored
versions; then the store is scrubbed (what is deleted, and how a running crawl stops, in the README)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from shared import keys
from shared.models import Document, Page
from shared.ports import KeyValueStore, scan
from shared.stores.events import Event
from shared.stores.tasks import IdempotencyRecord, get_page_json
from shared.urls import url_key


@dataclass
class ErasureReport:
    tasks: int = 0
    pages: int = 0
    documents: int = 0
    events: int = 0
    idempotency_keys: int = 0
    #: Every key deleted, those above included.
    keys: int = 0
    task_ids: set[str] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        return {name: value for name, value in asdict(self).items() if name != "task_ids"}


class Eraser:
    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv

    async def _delete(self, key: str, report: ErasureReport) -> None:
        await self.kv.delete(key)
        report.keys += 1

    async def erase_knowledge_base(self, tenant_id: str, kb_id: str) -> ErasureReport:
        report = ErasureReport()
        async for info in scan(self.kv, keys.kb_task_index_prefix(tenant_id, kb_id)):
            task_id = keys.task_id_of_index(info.name)
            report.task_ids.add(task_id)
            await self.erase_task(tenant_id, task_id, report)
            await self._delete(info.name, report)
        report.tasks = len(report.task_ids)
        if report.task_ids:
            async for info in scan(self.kv, keys.task_index_prefix(tenant_id)):
                if keys.task_id_of_index(info.name) in report.task_ids:
                    await self._delete(info.name, report)
            async for info in scan(self.kv, keys.idempotency_prefix(tenant_id)):
                raw = await self.kv.get(info.name)
                if raw and IdempotencyRecord.model_validate_json(raw).task_id in report.task_ids:
                    await self._delete(info.name, report)
                    report.idempotency_keys += 1
        async for info in scan(self.kv, keys.documents_prefix(tenant_id, kb_id)):
            await self._delete(info.name, report)
            report.documents += 1
        await self._forget_discoveries(tenant_id, kb_id, report)
        await self.kv.scrub()
        return report

    async def _forget_discoveries(self, tenant_id: str, kb_id: str, report: ErasureReport) -> None:
        """The knowledge base's kept sitemap discoveries: lists of its URLs, so an erased URL is in them too."""
        async for info in scan(self.kv, keys.sitemap_discoveries_prefix(tenant_id, kb_id)):
            await self._delete(info.name, report)

    async def erase_task(self, tenant_id: str, task_id: str, report: ErasureReport | None = None) -> ErasureReport:
        """Everything under the task's own keys, and its events in the tenant feed with their deliveries."""
        report = report or ErasureReport()
        async for info in scan(self.kv, keys.task_events_prefix(tenant_id, task_id)):
            raw = await self.kv.get(info.name)
            if raw:
                event = Event.model_validate_json(raw)
                await self._delete(keys.event(tenant_id, event.id), report)
                await self._delete(keys.delivery(tenant_id, event.id), report)
                await self._delete(keys.events_prefix(tenant_id) + event.feed_key, report)
                report.events += 1
        pages = keys.pages_prefix(tenant_id, task_id)
        async for info in scan(self.kv, keys.task(tenant_id, task_id)):
            report.pages += info.name.startswith(pages)
            await self._delete(info.name, report)
        return report

    async def purge_documents_of(self, tenant_id: str, kb_id: str, task_id: str) -> int:
        """Delete the knowledge base's documents that point at `task_id` (written by a crawl after its erasure)."""
        purged = 0
        async for info in scan(self.kv, keys.documents_prefix(tenant_id, kb_id)):
            raw = await self.kv.get(info.name)
            if raw and Document.model_validate_json(raw).task_id == task_id:
                await self.kv.delete(info.name)
                purged += 1
        return purged

    async def erase_document(self, tenant_id: str, kb_id: str, url: str) -> ErasureReport:
        """The document of `url` and every stored page of that URL in the knowledge base's tasks."""
        report = ErasureReport()
        key = keys.document(tenant_id, kb_id, url_key(url))
        if await self.kv.get(key) is not None:
            await self._delete(key, report)
            report.documents = 1
        async for index in scan(self.kv, keys.kb_task_index_prefix(tenant_id, kb_id)):
            task_id = keys.task_id_of_index(index.name)
            async for info in scan(self.kv, keys.pages_prefix(tenant_id, task_id)):
                raw = await get_page_json(self.kv, info.name)
                if raw and Page.model_validate_json(raw).url == url:
                    await self._delete(info.name, report)
                    report.pages += 1
                    report.task_ids.add(task_id)
        report.tasks = len(report.task_ids)
        await self._forget_discoveries(tenant_id, kb_id, report)
        await self.kv.scrub()
        return report

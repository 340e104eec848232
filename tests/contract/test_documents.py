"""Knowledge-base documents and erasure over the KV port, on every backend (memory, SQLite, Workers KV through
Pyodide): one document per URL with its list metadata, views of the latest page, changed_since, erasure of a
document or of everything of a knowledge base, and nothing of another knowledge base touched."""

from __future__ import annotations

from datetime import timedelta

from shared import keys
from shared.backends.base import Backends
from shared.models import Change, Document, Page, ScrapeRequest, SitemapReport, Task, utcnow
from shared.stores.documents import Discovery, DocumentStore
from shared.stores.erasure import Eraser
from shared.stores.tasks import TaskStore

TENANT = "tn_docs"


async def stored_task(backends: Backends, kb: str, task_id: str, urls: list[str]) -> Task:
    tasks, documents = TaskStore(backends.kv), DocumentStore(backends.kv)
    request = ScrapeRequest(url=urls[0], knowledge_base_id=kb, limit=len(urls))
    task = Task(task_id=task_id, tenant_id=TENANT, request=request)
    await tasks.create(task)
    now = utcnow()
    for seq, url in enumerate(urls):
        page = Page(url=url, status_code=200, markdown=f"text of {url}", change=Change.NEW)
        size = await tasks.put_page(TENANT, task_id, seq, page)
        document = Document(
            url=url, task_id=task_id, seq=seq, change=Change.NEW, fetched_at=now, first_seen_at=now, changed_at=now
        )
        await documents.put(TENANT, kb, document, page_bytes=size)
    return task


async def test_documents_list_their_latest_page_and_count_from_metadata(backends: Backends) -> None:
    urls = [f"http://127.0.0.1:9/{n}" for n in range(3)]
    await stored_task(backends, "kb_a", "a" * 32, urls)
    documents = DocumentStore(backends.kv)
    stats = await documents.stats(TENANT, "kb_a")
    assert stats.documents == 3 and stats.bytes > 0 and stats.last_crawled_at is not None
    views, cursor = await documents.list_views(TENANT, "kb_a", cursor=None, limit=2)
    more, end = await documents.list_views(TENANT, "kb_a", cursor=cursor, limit=2)
    assert end is None
    assert sorted(v["url"] for v in views + more) == urls
    assert {v["markdown"] for v in views + more} == {f"text of {u}" for u in urls}
    later = utcnow() + timedelta(seconds=1)
    assert (await documents.list_views(TENANT, "kb_a", cursor=None, limit=10, changed_since=later))[0] == []
    one = await documents.get(TENANT, "kb_a", urls[1])
    assert one is not None and one.seq == 1


async def test_erasure_removes_one_knowledge_base_whole_and_leaves_the_other(backends: Backends) -> None:
    await stored_task(backends, "kb_a", "a" * 32, ["http://127.0.0.1:9/x", "http://127.0.0.1:9/y"])
    await stored_task(backends, "kb_b", "b" * 32, ["http://127.0.0.1:9/x"])
    eraser = Eraser(backends.kv)
    gone = await eraser.erase_document(TENANT, "kb_a", "http://127.0.0.1:9/y")
    assert (gone.documents, gone.pages) == (1, 1)
    report = await eraser.erase_knowledge_base(TENANT, "kb_a")
    assert (report.tasks, report.pages, report.documents) == (1, 1, 1)
    left = [info.name for info in (await backends.kv.list(prefix=keys.tenant_prefix(TENANT))).keys]
    assert not [name for name in left if "a" * 32 in name or ":kb:kb_a:" in name]
    assert await TaskStore(backends.kv).get(TENANT, "b" * 32) is not None
    assert (await DocumentStore(backends.kv).stats(TENANT, "kb_b")).documents == 1
    assert (await eraser.erase_knowledge_base(TENANT, "kb_a")).keys == 0  # idempotent


async def test_a_kept_sitemap_discovery_reads_back_compressed_and_goes_with_its_knowledge_base(
    backends: Backends,
) -> None:
    documents = DocumentStore(backends.kv)
    found = [f"https://site.test/docs/page-{n}.html" for n in range(2000)]
    report = SitemapReport(files=2, urls=len(found))
    assert await documents.put_discovery(TENANT, "kb_s", "d1", Discovery(found, report, 1_800_000_000.0))
    raw = await backends.kv.get(keys.sitemap_discovery(TENANT, "kb_s", "d1"))
    assert raw is not None and raw.startswith("z1:") and len(raw) < len("".join(found)) // 4
    kept = await documents.discovery(TENANT, "kb_s", "d1")
    assert kept == Discovery(found, report, 1_800_000_000.0)
    assert await documents.discovery(TENANT, "kb_s", "other") is None
    await Eraser(backends.kv).erase_knowledge_base(TENANT, "kb_s")
    assert await documents.discovery(TENANT, "kb_s", "d1") is None

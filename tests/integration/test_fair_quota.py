"""Fair quotas: a task reserves its `limit` of the day's pages when it is accepted and, when it ends, gives back
every page it did not store (failed, skipped, never crawled), on the SQLite ledger and on the coordination core the
Durable Object runs. A task with 20 failed pages and 5 stored uses 5 pages of quota."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from consumer.fetch.client import build_client
from consumer.handler import make_handler
from producer.submit import submit
from shared.backends.base import Backends
from shared.backends.factory import open_memory_backends, open_sqlite_backends
from shared.errors import QuotaExceeded
from shared.models import ScrapeRequest, TaskStatus
from shared.stores.coordinated import CoordinatedQuotaLedger
from shared.stores.quotas import Quotas
from shared.stores.tasks import TaskStore
from tests.conftest import make_settings, new_caller
from tests.fixtures.static import serve_directory
from tests.integration.test_crawl import drain

STORED, FAILED = 5, 20
QUOTAS = Quotas(max_concurrent_tasks=0, max_pages_per_day=30)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An index linking 4 pages that exist and 20 that answer 404."""
    root = tmp_path_factory.mktemp("fair")
    links = [f'<a href="/ok{i}.html">ok {i}</a>' for i in range(STORED - 1)]
    links += [f'<a href="/gone{i}.html">gone {i}</a>' for i in range(FAILED)]
    (root / "index.html").write_text(f"<html><title>index</title><body>{' '.join(links)}</body></html>")
    for i in range(STORED - 1):
        (root / f"ok{i}.html").write_text(f"<html><title>ok {i}</title><body><p>page {i}</p></body></html>")
    with serve_directory(root) as base:
        yield base


@pytest.fixture(params=["sqlite", "coordinated"])
async def backends(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backends]:
    if request.param == "sqlite":
        opened: Backends = open_sqlite_backends(tmp_path / "scrapeq.sqlite3", visibility_timeout_s=30, max_retries=1)
    else:  # the core the Durable Object runs, here over this process's memory
        opened = open_memory_backends(visibility_timeout_s=30, max_retries=1)
        assert opened.coordination is not None
        opened = Backends(**{**vars(opened), "quotas": CoordinatedQuotaLedger(opened.coordination)})
    yield opened
    await opened.aclose()


async def test_failed_pages_use_no_quota(site: str, backends: Backends, tmp_path: Path) -> None:
    caller = await new_caller(backends, "fair", ["kb"])
    tasks = TaskStore(backends.kv, backends.reservations)

    async def accept(limit: int) -> str:
        request = ScrapeRequest(url=f"{site}/index.html", knowledge_base_id="kb", limit=limit)
        task, _ = await submit(
            request,
            tenant=caller.tenant,
            idempotency_key=None,
            tasks=tasks,
            ledger=backends.quotas,
            jobs=backends.jobs,
            idempotency_ttl_s=3600,
            quotas=QUOTAS,
        )
        return task.task_id

    first = await accept(STORED + FAILED)
    with pytest.raises(QuotaExceeded):
        await accept(STORED + FAILED)  # 25 of the day's 30 are reserved while the first task runs
    settings = make_settings(tmp_path, slice_max_pages=10, page_retries=0)
    async with build_client(settings) as client:
        await drain(backends, make_handler(settings, backends, client=client))
    done = await tasks.get(caller.tenant.tenant_id, first)
    assert done is not None and done.status is TaskStatus.COMPLETED
    assert (done.progress.pages_done, done.progress.pages_failed) == (STORED, FAILED)
    await accept(STORED + FAILED)  # 5 used + 25 = 30: the 20 failed pages were given back
    with pytest.raises(QuotaExceeded):
        await accept(1)

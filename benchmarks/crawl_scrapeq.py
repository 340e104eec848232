"""Crawl throughput of one `scrapeq worker` process: one task (markdown + links + metadata, pages in SQLite KV).

    .venv/bin/python benchmarks/crawl_scrapeq.py --start http://127.0.0.1:PORT/index.html --limit 2000 \
        --data-dir DIR [--concurrency 16]

The tenant, the task and its first job are written into a fresh data dir through the Python API (as
`POST /scrape` would), then one `scrapeq worker` process is started and stopped once the task is terminal.
Concurrency 16 in the crawl and, where the setting exists, towards one host (as Scrapy's
CONCURRENT_REQUESTS_PER_DOMAIN).
pages/s = pages_done / (finished_at - started_at) of the task record; CPU and peak RSS are the worker
process's own (from `wait4`, start-up included, as for the peers).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
import uuid
from pathlib import Path

from childproc import Child, clean_env, crawl_arguments, emit, exit_on_sigterm

from shared import keys
from shared.backends.factory import open_backends
from shared.models import TERMINAL, CrawlJob, ScrapeRequest, Task
from shared.ports import scan
from shared.settings import Settings
from shared.stores.accounts import Accounts
from shared.stores.tasks import TaskStore

KB = "kb_bench"


async def submit(settings: Settings, start_url: str, limit: int) -> Task:
    backends = open_backends(settings)
    try:
        tenant = await Accounts(backends.kv).create_tenant("bench", [KB])
        request = ScrapeRequest(url=start_url, knowledge_base_id=KB, limit=limit)
        task = Task(task_id=uuid.uuid4().hex, tenant_id=tenant.tenant_id, request=request)
        await TaskStore(backends.kv).create(task)
        await backends.jobs.send(CrawlJob(tenant_id=task.tenant_id, task_id=task.task_id).model_dump(mode="json"))
        return task
    finally:
        await backends.aclose()


async def wait_terminal(settings: Settings, task: Task, worker: Child, timeout_s: float) -> tuple[Task, int]:
    """Poll the task record until it is terminal; returns it and the number of stored page records."""
    backends = open_backends(settings)
    store = TaskStore(backends.kv)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            current = await store.get(task.tenant_id, task.task_id)
            if current is not None and current.status in TERMINAL:
                break
            if worker.poll() is not None:
                raise RuntimeError(f"scrapeq worker exited early: {worker.usage}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"task not finished after {timeout_s} s: {current}")
            await asyncio.sleep(0.05)
        stored = [info async for info in scan(backends.kv, keys.pages_prefix(task.tenant_id, task.task_id))]
        return current, len(stored)
    finally:
        await backends.aclose()


def worker_settings(data_dir: Path, *, limit: int, concurrency: int) -> dict[str, str]:
    """The worker's environment for a crawl row (the re-crawl row uses it too)."""
    settings_env = {
        "SCRAPEQ_DATA_DIR": str(data_dir),
        "SCRAPEQ_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8",
        "SCRAPEQ_CRAWL_CONCURRENCY": str(concurrency),
        # One slice for the whole crawl: the row measures crawling, not checkpoint cadence.
        "SCRAPEQ_SLICE_MAX_PAGES": str(limit + 1000),
        "SCRAPEQ_SLICE_MAX_S": "3600",
    }
    if "host_max_concurrency" in Settings.model_fields:
        # As Scrapy's CONCURRENT_REQUESTS_PER_DOMAIN: all of the concurrency may go to the one host.
        settings_env["SCRAPEQ_HOST_MAX_CONCURRENCY"] = str(concurrency)
    return settings_env


def main() -> None:
    parser = crawl_arguments(__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--timeout-s", type=float, default=300)
    args = parser.parse_args()
    exit_on_sigterm()

    shutil.rmtree(args.data_dir, ignore_errors=True)
    args.data_dir.mkdir(parents=True)
    settings_env = worker_settings(args.data_dir, limit=args.limit, concurrency=args.concurrency)
    env = clean_env(**settings_env)
    settings = Settings(data_dir=args.data_dir)
    task = asyncio.run(submit(settings, args.start, args.limit))

    scrapeq = Path(sys.executable).with_name("scrapeq")
    with open(args.data_dir / "worker.log", "wb") as log:
        worker = Child([str(scrapeq), "worker"], env=env, cwd=args.data_dir, stdout=log, stderr=log)
        try:
            done, stored = asyncio.run(wait_terminal(settings, task, worker, args.timeout_s))
        finally:
            usage = worker.stop(timeout_s=10)  # a finished task: it exits at once; else no waiting out the slice

    if done.status != "completed" or done.started_at is None or done.finished_at is None:
        raise RuntimeError(f"the task did not complete: {done.model_dump_json()}")
    elapsed_s = (done.finished_at - done.started_at).total_seconds()
    pages = done.progress.pages_done
    emit(
        {
            "system": "scrapeq",
            "settings": {k: v for k, v in settings_env.items() if k != "SCRAPEQ_DATA_DIR"},
            "status": str(done.status),
            "pages": pages,
            "pages_failed": done.progress.pages_failed,
            "pages_skipped": done.progress.pages_skipped,
            "pages_stored": stored,
            "slices": done.slices,
            "elapsed_s": elapsed_s,
            "pages_per_s": pages / elapsed_s if elapsed_s > 0 else 0.0,
            "cpu_ms_per_page": usage.cpu_s * 1000 / pages if pages else None,
            "peak_rss_mb": usage.max_rss_kb / 1024,
            "process": usage.as_dict(),
        }
    )


if __name__ == "__main__":
    main()

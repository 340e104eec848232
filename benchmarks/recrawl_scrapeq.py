"""A knowledge base crawled twice, nothing changed in between: the re-crawl's time and CPU against the first
crawl's (conditional requests: nginx answers 304 from ETag / Last-Modified), and the bytes stored per page.

    .venv/bin/python benchmarks/recrawl_scrapeq.py --start http://127.0.0.1:PORT/index.html --limit 2000 \
        --data-dir DIR [--concurrency 16]

One `scrapeq worker` process runs both tasks, one after the other, in one knowledge base (as `crawl_scrapeq.py`
runs one). Per crawl: seconds from started_at to finished_at, the worker's CPU (from /proc, between the tasks),
the `changes` counts. Bytes: each stored page record as its JSON and as stored (deflated above 1 KiB).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

from childproc import Child, clean_env, crawl_arguments, emit, exit_on_sigterm
from crawl_scrapeq import worker_settings

from shared import keys
from shared.backends.factory import open_backends
from shared.models import TERMINAL, CrawlJob, ScrapeRequest, Task
from shared.ports import scan
from shared.settings import Settings
from shared.stores.accounts import Accounts
from shared.stores.tasks import TaskStore, decode_page

KB = "kb_bench"


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def submit(settings: Settings, tenant_id: str, start_url: str, limit: int) -> Task:
    backends = open_backends(settings)
    try:
        request = ScrapeRequest(url=start_url, knowledge_base_id=KB, limit=limit)
        task = Task(task_id=uuid.uuid4().hex, tenant_id=tenant_id, request=request)
        await TaskStore(backends.kv).create(task)
        await backends.jobs.send(CrawlJob(tenant_id=task.tenant_id, task_id=task.task_id).model_dump(mode="json"))
        return task
    finally:
        await backends.aclose()


async def new_tenant(settings: Settings) -> str:
    backends = open_backends(settings)
    try:
        return (await Accounts(backends.kv).create_tenant("bench", [KB])).tenant_id
    finally:
        await backends.aclose()


async def wait_terminal(settings: Settings, task: Task, worker: Child, timeout_s: float) -> Task:
    backends = open_backends(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            current = await TaskStore(backends.kv).get(task.tenant_id, task.task_id)
            if current is not None and current.status in TERMINAL:
                return current
            if worker.poll() is not None:
                raise RuntimeError(f"scrapeq worker exited early: {worker.usage}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"task not finished after {timeout_s} s: {current}")
            await asyncio.sleep(0.05)
    finally:
        await backends.aclose()


async def stored_bytes(settings: Settings, task: Task) -> tuple[int, int, int]:
    """(pages, bytes of their JSON, bytes as stored)."""
    backends = open_backends(settings)
    pages = plain = stored = 0
    try:
        async for info in scan(backends.kv, keys.pages_prefix(task.tenant_id, task.task_id)):
            raw = await backends.kv.get(info.name)
            if raw is not None:
                pages += 1
                stored += len(raw.encode())
                plain += len(decode_page(raw).encode())
    finally:
        await backends.aclose()
    return pages, plain, stored


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
    tenant_id = asyncio.run(new_tenant(settings))

    scrapeq = Path(sys.executable).with_name("scrapeq")
    crawls = []
    with open(args.data_dir / "worker.log", "wb") as log:
        worker = Child([str(scrapeq), "worker"], env=env, cwd=args.data_dir, stdout=log, stderr=log)
        try:
            for _ in ("first", "again"):
                cpu_before = cpu_s(worker.pid)
                task = asyncio.run(submit(settings, tenant_id, args.start, args.limit))
                done = asyncio.run(wait_terminal(settings, task, worker, args.timeout_s))
                if done.status != "completed" or done.started_at is None or done.finished_at is None:
                    raise RuntimeError(f"the task did not complete: {done.model_dump_json()}")
                crawls.append((done, cpu_s(worker.pid) - cpu_before))
        finally:
            worker.stop(timeout_s=10)

    (first, first_cpu), (again, again_cpu) = crawls
    first_s = (first.finished_at - first.started_at).total_seconds()  # type: ignore[operator]
    again_s = (again.finished_at - again.started_at).total_seconds()  # type: ignore[operator]
    pages, plain, stored = asyncio.run(stored_bytes(settings, first))
    emit(
        {
            "system": "scrapeq",
            "pages": first.progress.pages_done,
            "first": {"elapsed_s": first_s, "cpu_s": first_cpu, "changes": first.changes.model_dump()},
            "again": {"elapsed_s": again_s, "cpu_s": again_cpu, "changes": again.changes.model_dump()},
            "speedup": first_s / again_s if again_s > 0 else None,
            "cpu_ratio": first_cpu / again_cpu if again_cpu > 0 else None,
            "bytes_per_page_json": plain / pages if pages else None,
            "bytes_per_page_stored": stored / pages if pages else None,
            "compression_ratio": plain / stored if stored else None,
        }
    )


if __name__ == "__main__":
    main()

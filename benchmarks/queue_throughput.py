"""SQLite job queue throughput at two backlogs: messages/s of `send` + `receive` + `ack`, one at a time.

    .venv/bin/python benchmarks/queue_throughput.py --work-dir DIR [--backlogs 100,100000] [--ops 4000]

Each backlog is sent through the queue's own `send` (`shared.backends.open_sqlite_backends`) into a template
database once per work dir; every run copies the templates, so it starts from the same files. A cycle sends one
message (a real `CrawlJob` body), receives one (the oldest visible: the backlog keeps its size) and acks it.
The backlogs take turns in blocks of `--block` cycles, in one process, so drift of the machine touches them
alike and their ratio is paired; `--warmup` cycles on each are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from childproc import emit

from shared.backends.base import Backends
from shared.backends.factory import open_sqlite_backends
from shared.backends.sqlite.store import SqliteQueue
from shared.models import CrawlJob

FILL_BATCH = 200


def job() -> dict[str, Any]:
    return CrawlJob(tenant_id="tn_benchbenchbench", task_id=uuid.uuid4().hex).model_dump(mode="json")


def open_queue(path: Path) -> Backends[SqliteQueue]:
    return open_sqlite_backends(path, visibility_timeout_s=300, max_retries=3)


async def fill(path: Path, backlog: int) -> float:
    """Send `backlog` messages into a new database at `path`; returns messages/s of the fill."""
    backends = open_queue(path)
    started = time.perf_counter()
    try:
        for first in range(0, backlog, FILL_BATCH):
            count = min(FILL_BATCH, backlog - first)
            await asyncio.gather(*(backends.jobs.send(job()) for _ in range(count)))
    finally:
        await backends.aclose()
    return backlog / (time.perf_counter() - started)


async def cycle(queue: SqliteQueue, n: int) -> float:
    """`n` send + receive + ack cycles; returns their seconds."""
    started = time.perf_counter()
    for _ in range(n):
        await queue.send(job())
        (message,) = await queue.receive(max_messages=1)
        await queue.ack(message)
    return time.perf_counter() - started


async def measure(paths: dict[int, Path], *, ops: int, block: int, warmup: int) -> dict[int, dict[str, Any]]:
    opened = {backlog: open_queue(path) for backlog, path in paths.items()}
    seconds = dict.fromkeys(paths, 0.0)
    try:
        for backends in opened.values():
            await cycle(backends.jobs, warmup)
        order = list(paths)
        for turn in range(max(1, ops // block)):
            for backlog in order if turn % 2 == 0 else reversed(order):
                seconds[backlog] += await cycle(opened[backlog].jobs, block)
        done = max(1, ops // block) * block
        return {
            backlog: {"messages_per_s": done / seconds[backlog], "backlog_after": await opened[backlog].jobs.size()}
            for backlog in paths
        }
    finally:
        for backends in opened.values():
            await backends.aclose()


def prepare(work_dir: Path, backlog: int) -> tuple[Path, float | None]:
    """A fresh copy of the template database holding `backlog` messages (made first if missing)."""
    template = work_dir / f"template-{backlog}.sqlite3"
    fill_rate = None
    if not template.exists():
        partial = work_dir / f"template-{backlog}.partial"
        for leftover in work_dir.glob(partial.name + "*"):
            leftover.unlink()
        fill_rate = asyncio.run(fill(partial, backlog))
        partial.rename(template)  # closed: the WAL is checkpointed into the file and removed
    db = work_dir / f"run-{backlog}.sqlite3"
    for old in work_dir.glob(db.name + "*"):
        old.unlink()
    shutil.copyfile(template, db)
    return db, fill_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--backlogs", default="100,100000")
    parser.add_argument("--ops", type=int, default=4000)
    parser.add_argument("--block", type=int, default=250)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    backlogs = [int(part) for part in args.backlogs.split(",")]
    paths, fills = {}, {}
    for backlog in backlogs:
        paths[backlog], fills[backlog] = prepare(args.work_dir, backlog)
    rates = asyncio.run(measure(paths, ops=args.ops, block=args.block, warmup=args.warmup))
    smallest, largest = min(backlogs), max(backlogs)
    emit(
        {
            "ops": args.ops,
            "block": args.block,
            "backlogs": {str(b): {**rates[b], "fill_messages_per_s": fills[b]} for b in backlogs},
            "messages_per_s": rates[smallest]["messages_per_s"],
            "ratio_largest_to_smallest": rates[largest]["messages_per_s"] / rates[smallest]["messages_per_s"],
        }
    )


if __name__ == "__main__":
    main()

"""Opens the embedded SQLite or the in-memory backends (their modules imported lazily, as saq does)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from shared.backends.base import Backends
from shared.backends.kvlimits import DEAD_LETTER_QUEUE, JOBS_QUEUE
from shared.errors import StorageError
from shared.ports import Clock
from shared.stores.quotas import KvQuotaLedger
from shared.stores.usage import MemoryUsageLedger

if TYPE_CHECKING:
    from shared.backends.memory import MemoryQueue
    from shared.backends.sqlite.store import SqliteQueue
    from shared.settings import Settings


def open_sqlite_backends(
    path: Path, *, visibility_timeout_s: float, max_retries: int, clock: Clock = time.time
) -> Backends[SqliteQueue]:
    """KV and queues in one SQLite file; the connections open on first use (see `Backends.ping`)."""
    from shared.backends.sqlite.coordinator import sqlite_coordinator
    from shared.backends.sqlite.ledger import SqliteQuotaLedger
    from shared.backends.sqlite.store import SqliteKV, SqliteQueue
    from shared.backends.sqlite.usage_ledger import SqliteUsageLedger

    dead_letters = SqliteQueue(
        path,
        DEAD_LETTER_QUEUE,
        clock=clock,
        visibility_timeout_s=visibility_timeout_s,
        max_retries=max_retries,
    )
    jobs = SqliteQueue(
        path,
        JOBS_QUEUE,
        clock=clock,
        visibility_timeout_s=visibility_timeout_s,
        max_retries=max_retries,
        dead_letter=dead_letters,
    )
    kv = SqliteKV(path, clock=clock)
    return Backends(
        kv=kv,
        jobs=jobs,
        quotas=SqliteQuotaLedger(kv),
        reservations=kv,
        usage=SqliteUsageLedger(kv),
        dead_letters=dead_letters,
        coordination=sqlite_coordinator(kv, clock=clock),
        name="sqlite",
    )


def open_memory_backends(
    *, visibility_timeout_s: float, max_retries: int, clock: Clock = time.time
) -> Backends[MemoryQueue]:
    from shared.backends.memory import MemoryKV, MemoryQueue
    from shared.coordination import MemoryRunner, RunnerCoordinator

    dead_letters = MemoryQueue(
        DEAD_LETTER_QUEUE, clock=clock, visibility_timeout_s=visibility_timeout_s, max_retries=max_retries
    )
    jobs = MemoryQueue(
        JOBS_QUEUE,
        clock=clock,
        visibility_timeout_s=visibility_timeout_s,
        max_retries=max_retries,
        dead_letter=dead_letters,
    )
    kv = MemoryKV(clock=clock)
    return Backends(
        kv=kv,
        jobs=jobs,
        quotas=KvQuotaLedger(kv),
        reservations=kv,
        usage=MemoryUsageLedger(),
        dead_letters=dead_letters,
        coordination=RunnerCoordinator(MemoryRunner(clock)),
        name="memory",
    )


def open_backends(settings: Settings) -> Backends[SqliteQueue]:
    """The embedded SQLite backends at `settings.sqlite_path`, creating the data directory."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create data directory {settings.data_dir}: {exc}") from exc
    return open_sqlite_backends(
        settings.sqlite_path,
        visibility_timeout_s=settings.queue_visibility_timeout_s,
        max_retries=settings.queue_max_retries,
    )

"""The `Backends` bundle and the factory that opens the embedded SQLite or the in-memory pair (backend
modules imported lazily, as saq does). The limits every backend enforces are in `limits.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from shared.backends.limits import DEAD_LETTER_QUEUE, JOBS_QUEUE
from shared.errors import StorageError
from shared.ports import Clock, JobQueue, KeyValueStore

if TYPE_CHECKING:
    from shared.backends.memory import MemoryQueue
    from shared.backends.sqlite import SqliteQueue
    from shared.settings import Settings

__all__ = [
    "Backends",
    "Lifecycle",
    "QueueStats",
    "open_backends",
    "open_memory_backends",
    "open_sqlite_backends",
]


@dataclass(frozen=True)
class QueueStats:
    """Messages in a queue by state: ready now, delivered and under lease, or waiting out a delay."""

    visible: int
    leased: int
    delayed: int


@runtime_checkable
class Lifecycle(Protocol):
    """What a local backend object offers beyond its port: a health check and a close."""

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


Q = TypeVar("Q", bound=JobQueue, covariant=True)


@dataclass(frozen=True)
class Backends(Generic[Q]):
    """The storage one process uses: KV, the job queue and (for a local consumer) its dead-letter queue.

    `Q` is the queue's type: a local queue (`SqliteQueue`, `MemoryQueue`) also receives; a Worker's queue
    producer binding only sends, and the runtime pushes batches to the consumer Worker instead.
    """

    kv: KeyValueStore
    jobs: Q
    dead_letters: Q | None = None
    #: Which backend this is ("sqlite", "memory", "cloudflare"), for `/health` and logs.
    name: str = "custom"

    def _parts(self) -> list[Lifecycle]:
        parts: list[Any] = [self.kv, self.jobs, self.dead_letters]
        return [part for part in parts if isinstance(part, Lifecycle)]

    async def ping(self) -> None:
        """Raise StorageError if any backend cannot be reached."""
        for part in self._parts():
            await part.ping()

    async def aclose(self) -> None:
        errors: list[StorageError] = []
        for part in self._parts():
            try:
                await part.aclose()
            except StorageError as exc:  # close the rest before reporting
                errors.append(exc)
        if errors:
            raise errors[0]


def open_sqlite_backends(
    path: Path, *, visibility_timeout_s: float, max_retries: int, clock: Clock = time.time
) -> Backends[SqliteQueue]:
    """KV and queues in one SQLite file; the connections open on first use (see `Backends.ping`)."""
    from shared.backends.sqlite import SqliteKV, SqliteQueue

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
    return Backends(kv=SqliteKV(path, clock=clock), jobs=jobs, dead_letters=dead_letters, name="sqlite")


def open_memory_backends(
    *, visibility_timeout_s: float, max_retries: int, clock: Clock = time.time
) -> Backends[MemoryQueue]:
    from shared.backends.memory import MemoryKV, MemoryQueue

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
    return Backends(kv=MemoryKV(clock=clock), jobs=jobs, dead_letters=dead_letters, name="memory")


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

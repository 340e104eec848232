"""`Backends`: the storage one process uses (KV, job queue, dead letters), whichever backend provides it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from shared.errors import StorageError
from shared.ports import JobQueue, KeyValueStore, Reservations

if TYPE_CHECKING:
    from shared.coordination import Coordinator
    from shared.stores.quotas import QuotaLedger
    from shared.stores.usage import UsageLedger


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
    #: Where tenant quotas are counted: exact counters in SQLite, or KV keys (`shared.stores.quotas`).
    quotas: QuotaLedger
    #: First-writer-wins keys (idempotency): the KV store itself where it can compare and set.
    reservations: Reservations
    #: Where tenants' usage is counted: exact counters in SQLite or memory, write-once-a-second shards over KV.
    usage: UsageLedger
    dead_letters: Q | None = None
    #: What every process or isolate must agree on (host slots for politeness; on Cloudflare also the quotas and
    #: keys above): the SQLite file, this process's memory, or Durable Objects. None: each process on its own.
    coordination: Coordinator | None = None
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

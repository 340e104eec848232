"""Racing submits through each backend's quota ledger and reservations: on Cloudflare these are the Durable Object
code (the tenant's object, in Pyodide), so both are exact there as on SQLite: one task per Idempotency-Key, and
exactly as many tasks as the concurrency quota has places."""

from __future__ import annotations

import asyncio

from producer.submit import submit
from shared.backends.base import Backends
from shared.errors import IdempotencyKeyInUse, QuotaExceeded
from shared.models import ScrapeRequest
from shared.stores.quotas import Quotas
from shared.stores.tasks import TaskStore
from tests.conftest import new_caller

REQUEST = ScrapeRequest(url="https://docs.example/start", knowledge_base_id="kb_r", limit=2)


async def racing_submits(backends: Backends, n: int, *, key: str | None, places: int) -> list[object]:
    caller = await new_caller(backends, "racer", ["kb_r"])
    tasks = TaskStore(backends.kv, backends.reservations)
    quotas = Quotas(max_concurrent_tasks=places, max_pages_per_day=0)

    async def one() -> object:
        try:
            task, created = await submit(
                REQUEST,
                tenant=caller.tenant,
                idempotency_key=key,
                tasks=tasks,
                ledger=backends.quotas,
                jobs=backends.jobs,
                idempotency_ttl_s=3600,
                quotas=quotas,
            )
        except (IdempotencyKeyInUse, QuotaExceeded) as exc:
            return exc
        return task.task_id, created

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def test_32_racing_duplicates_make_one_task(backends: Backends) -> None:
    outcomes = await racing_submits(backends, 32, key="order-42", places=0)
    made = [o for o in outcomes if isinstance(o, tuple) and o[1]]
    replays = [o for o in outcomes if isinstance(o, tuple) and not o[1]]
    in_use = [o for o in outcomes if isinstance(o, IdempotencyKeyInUse)]
    assert len(made) == 1
    assert {task_id for task_id, _ in replays} <= {made[0][0]}  # a replay answers with the original's task
    assert len(made) + len(replays) + len(in_use) == 32


async def test_100_racing_submits_for_25_places_make_25_tasks(backends: Backends) -> None:
    outcomes = await racing_submits(backends, 100, key=None, places=25)
    assert sum(isinstance(o, tuple) for o in outcomes) == 25
    assert sum(isinstance(o, QuotaExceeded) for o in outcomes) == 75

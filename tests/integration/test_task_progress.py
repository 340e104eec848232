"""A running task's progress between checkpoints, as `GET /tasks/{id}` and `GET /tasks` show it."""

from __future__ import annotations

import httpx

from shared.backends.base import Backends
from shared.models import Progress, TaskStatus
from shared.stores.tasks import TaskStore
from tests.conftest import Caller
from tests.integration.test_api import submit


async def test_a_running_task_shows_the_progress_its_slice_published(
    api: httpx.AsyncClient, backends: Backends, alice: Caller
) -> None:
    task_id = (await submit(api, alice)).json()["task_id"]
    store = TaskStore(backends.kv)
    await store.save_live_progress(alice.tenant.tenant_id, task_id, Progress(pages_done=3, pages_failed=1))
    # Queued: nothing runs it yet, so what is published is not read.
    assert (await api.get(f"/tasks/{task_id}", headers=alice.headers)).json()["progress"]["pages_done"] == 0
    task = await store.get(alice.tenant.tenant_id, task_id)
    assert task is not None
    task.status = TaskStatus.RUNNING
    await store.save(task)
    shown = (await api.get(f"/tasks/{task_id}", headers=alice.headers)).json()["progress"]
    assert shown == {"pages_done": 3, "pages_failed": 1, "pages_skipped": 0}
    listed = (await api.get("/tasks", headers=alice.headers)).json()["tasks"]
    assert [t["progress"]["pages_done"] for t in listed if t["task_id"] == task_id] == [3]
    # A checkpoint ahead of what was published wins (a redelivered slice starts behind it).
    task.progress = Progress(pages_done=7)
    await store.save(task)
    assert (await api.get(f"/tasks/{task_id}", headers=alice.headers)).json()["progress"]["pages_done"] == 7

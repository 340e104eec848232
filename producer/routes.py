"""The HTTP API of SPEC §1: health, submit, task status, pages, listing and cancel."""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from producer import submit as submission
from producer.deps import BackendsDep, EventsDep, Principal, PrincipalDep, TasksDep, services_of
from producer.problems import STORAGE_RETRY_AFTER_S, problem_responses
from shared.errors import Forbidden, NotFound, ServiceUnavailable, StorageError
from shared.models import (
    KB_ID_PATTERN,
    TERMINAL,
    PageList,
    Progress,
    ScrapeRequest,
    Task,
    TaskAccepted,
    TaskList,
    TaskPublic,
    TaskStatus,
)
from shared.stores.events import EventLog
from shared.stores.quotas import Quotas
from shared.stores.tasks import TaskStore
from shared.stores.usage import TASKS_SUBMITTED, record

log = logging.getLogger(__name__)
router = APIRouter()

_TASK_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_IDEMPOTENCY_KEY = 255
#: What every authenticated route may answer besides its own: bad key, bad parameters, limits, a backend down.
AUTHENTICATED = (401, 422, 429, 503)
TASK_ROUTE = problem_responses(*AUTHENTICATED, 404)

TaskIdPath = Annotated[str, Path(max_length=64, description="The task id returned by POST /scrape")]
PageLimit = Annotated[int, Query(ge=1, le=1000)]
CursorQuery = Annotated[str | None, Query(max_length=4096)]


async def load_task(tasks: TaskStore, principal: Principal, task_id: str) -> Task:
    task = await tasks.get(principal.tenant_id, task_id) if _TASK_ID.match(task_id) else None
    if task is None or not principal.key.may_use(principal.tenant, task.request.knowledge_base_id):
        raise NotFound(f"no task {task_id!r}")
    return task


async def _public(tasks: TaskStore, task: Task, events: EventLog) -> TaskPublic:
    cancel = task.status not in TERMINAL and await tasks.cancel_requested(task.tenant_id, task.task_id)
    deliveries = None
    if task.request.webhook is not None:
        deliveries = await events.task_deliveries(task.tenant_id, task.task_id)
    if task.status is TaskStatus.RUNNING:
        # Between checkpoints the record lags: the running slice publishes its progress apart, every second.
        live = await tasks.live_progress(task.tenant_id, task.task_id)
        if live is not None and _total(live) > _total(task.progress):
            task = task.model_copy(update={"progress": live})
    return task.public(cancel_requested=cancel, deliveries=deliveries)


def _total(progress: Progress) -> int:
    return progress.pages_done + progress.pages_failed + progress.pages_skipped


@router.get("/health", tags=["service"], responses=problem_responses(503))
async def health(backends: BackendsDep) -> dict[str, Any]:
    """Liveness and backend reachability (no authentication)."""
    try:
        await backends.ping()
    except StorageError as exc:
        log.warning("health check failed: %s", exc)
        raise ServiceUnavailable(
            f"the {backends.name} backend cannot be written to (full, read-only or unreachable)",
            headers={"Retry-After": str(STORAGE_RETRY_AFTER_S)},
            backend=backends.name,
        ) from None
    return {"status": "ok", "backend": backends.name}


#: Documented by hand: read from the headers in `scrape`, as a declared parameter costs FastAPI more to solve.
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Repeat a submit safely: the same key and body within 24 h return the first task (200, "
    "`Idempotent-Replayed: true`); the same key with another body is 422 `idempotency_key_mismatch`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
}


def idempotency_key_of(request: Request) -> str | None:
    value = request.headers.get("idempotency-key")
    if value is not None and not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY:
        error = {"type": "string_length", "loc": ("header", "Idempotency-Key"), "input": value,
                 "msg": f"String should have 1 to {MAX_IDEMPOTENCY_KEY} characters"}  # fmt: skip
        raise RequestValidationError([error])
    return value


@router.post(
    "/scrape",
    status_code=202,
    response_model=TaskAccepted,
    tags=["tasks"],
    responses={
        200: {
            "model": TaskAccepted,
            "description": "A replay: the task an earlier request with this Idempotency-Key made",
        },
        **problem_responses(*AUTHENTICATED, 400, 403, 409, 413),
    },
    openapi_extra={"parameters": [IDEMPOTENCY_KEY]},
)
async def scrape(body: ScrapeRequest, principal: PrincipalDep, request: Request) -> Response:
    """Submit a crawl. Answers at once; poll `status_url` or subscribe a webhook."""
    return await accept(body, principal, request)


async def accept(body: ScrapeRequest, principal: Principal, request: Request) -> Response:
    """The answer to a valid `POST /scrape` of an authenticated caller (also served by `fastpath`)."""
    services = services_of(request)
    idempotency_key = idempotency_key_of(request)
    submission.authorise(body, tenant=principal.tenant, key=principal.key, policy=services.address_policy)
    task, created = await submission.submit(
        body,
        tenant=principal.tenant,
        idempotency_key=idempotency_key,
        tasks=services.tasks,
        ledger=services.backends.quotas,
        jobs=services.backends.jobs,
        idempotency_ttl_s=services.settings.idempotency_ttl_s,
        quotas=Quotas.of(principal.tenant, services.settings),
    )
    accepted = TaskAccepted(
        task_id=task.task_id,
        status=task.status,
        status_url=f"/tasks/{task.task_id}",
        created_at=task.created_at,
    )
    if created:
        await record(services.backends.usage, task.tenant_id, {TASKS_SUBMITTED: 1}, at=task.created_at)
    headers = {"Location": accepted.status_url}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    status = 202 if created else 200
    return Response(accepted.model_dump_json(), status_code=status, headers=headers, media_type="application/json")


@router.get("/tasks/{task_id}", response_model=TaskPublic, tags=["tasks"], responses=TASK_ROUTE)
async def get_task(task_id: TaskIdPath, principal: PrincipalDep, tasks: TasksDep, events: EventsDep) -> TaskPublic:
    """Status and progress of one task, and the delivery of its webhook."""
    return await _public(tasks, await load_task(tasks, principal, task_id), events)


@router.get("/tasks/{task_id}/pages", response_model=PageList, tags=["tasks"], responses=TASK_ROUTE)
async def get_pages(
    task_id: TaskIdPath,
    principal: PrincipalDep,
    tasks: TasksDep,
    cursor: CursorQuery = None,
    limit: PageLimit = 50,
) -> Response:
    """The task's pages in crawl order, `limit` at a time (and at most about 10 MB per response)."""
    task = await load_task(tasks, principal, task_id)
    pages, next_cursor = await tasks.list_pages_json(task.tenant_id, task.task_id, cursor=cursor, limit=limit)
    # Stored records are already the public JSON shape: splice them instead of parsing and re-serialising.
    body = '{"pages":[' + ",".join(pages) + '],"next_cursor":' + json.dumps(next_cursor) + "}"
    return Response(body, media_type="application/json")


@router.get("/tasks", response_model=TaskList, tags=["tasks"], responses=problem_responses(*AUTHENTICATED, 403))
async def list_tasks(
    principal: PrincipalDep,
    tasks: TasksDep,
    events: EventsDep,
    knowledge_base_id: Annotated[str | None, Query(pattern=KB_ID_PATTERN)] = None,
    status: TaskStatus | None = None,
    cursor: CursorQuery = None,
    limit: PageLimit = 50,
) -> TaskList:
    """The tenant's tasks, newest first, optionally filtered by knowledge base and status."""
    if knowledge_base_id is not None and not principal.key.may_use(principal.tenant, knowledge_base_id):
        raise Forbidden(f"knowledge base {knowledge_base_id!r} is not allowed for this API key")
    found, next_cursor = await tasks.list_tasks(
        principal.tenant_id, knowledge_base_id=knowledge_base_id, status=status, cursor=cursor, limit=limit
    )
    visible = [t for t in found if principal.key.may_use(principal.tenant, t.request.knowledge_base_id)]
    return TaskList(tasks=[await _public(tasks, t, events) for t in visible], next_cursor=next_cursor)


@router.delete(
    "/tasks/{task_id}",
    response_model=TaskPublic,
    tags=["tasks"],
    responses={
        202: {"model": TaskPublic, "description": "Cancel requested; the crawl stops at its next page"},
        **TASK_ROUTE,
    },
)
async def cancel_task(task_id: TaskIdPath, principal: PrincipalDep, tasks: TasksDep) -> JSONResponse:
    """Cancel a task (idempotent): 202 while the crawl stops at its next page boundary, 200 once it has ended."""
    task = await load_task(tasks, principal, task_id)
    if task.status in TERMINAL:
        return JSONResponse(task.public().model_dump(mode="json"), status_code=200)
    await tasks.request_cancel(task.tenant_id, task.task_id)
    return JSONResponse(task.public(cancel_requested=True).model_dump(mode="json"), status_code=202)

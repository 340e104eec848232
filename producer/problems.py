"""RFC 9457 problem responses: the one place where errors become HTTP answers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import ApiError, StorageError

log = logging.getLogger(__name__)

#: When to try again after a storage failure (a full or read-only disk, a backend that cannot be reached).
STORAGE_RETRY_AFTER_S = 5
PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: ("Bad request", "bad_request"),
    401: ("Unauthorized", "unauthorized"),
    403: ("Forbidden", "forbidden"),
    404: ("Not found", "not_found"),
    405: ("Method not allowed", "method_not_allowed"),
    406: ("Not acceptable", "not_acceptable"),
    413: ("Payload too large", "payload_too_large"),
    415: ("Unsupported media type", "unsupported_media_type"),
    422: ("Invalid input", "invalid_input"),
    429: ("Too many requests", "rate_limited"),
    500: ("Internal server error", "internal_error"),
    503: ("Service unavailable", "service_unavailable"),
}


#: The body of every problem answer, for the OpenAPI document.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "stable, machine-readable: the README lists them"},
        "errors": {"type": "array", "items": {"type": "object"}, "description": "per-field validation errors"},
    },
}
#: What each status means wherever it is declared.
_MEANINGS = {
    400: "The body is not parseable JSON",
    401: "Missing, malformed, unknown, revoked or expired API key",
    403: "Knowledge base or domain not allowed for this key",
    404: "Unknown resource (or another tenant's)",
    409: "`idempotency_key_in_use`: the first request with this Idempotency-Key is still being written",
    413: "Request body too large",
    422: "Invalid input (`validation_error`, `url_not_allowed`, `idempotency_key_mismatch`, `invalid_input`, "
    "or `quota_exceeded` when the task alone is over the tenant's pages per day)",
    429: "Rate limited (`rate_limited`) or a tenant quota used up (`quota_exceeded`); see Retry-After",
    503: "A backend is unavailable; retrying after Retry-After is safe",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The problem answers one route can give, for its `responses=` (declared per route, as they differ)."""
    return {
        status: {"description": _MEANINGS[status], "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
        for status in sorted(statuses)
    }


def problem(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    default_title, default_code = _TITLES.get(status, ("Error", "error"))
    code = code or default_code
    body = {
        "type": f"urn:scrapeq:problem:{code}",
        "title": title or default_title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def api_problem(exc: ApiError) -> JSONResponse:
    return problem(exc.status, exc.detail, code=exc.code, title=exc.title, headers=exc.headers, **exc.extra)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return api_problem(exc)


def storage_problem(exc: StorageError) -> JSONResponse:
    """503 for a storage failure: nothing of the request was committed that a retry would double (idempotency
    and the order of writes see to that), so retrying is safe. The backend's own message stays in the log."""
    log.warning("storage unavailable: %s", exc)
    return problem(
        503,
        "storage is unavailable (full, read-only or unreachable); retry after Retry-After",
        code="storage_unavailable",
        headers={"Retry-After": str(STORAGE_RETRY_AFTER_S)},
    )


async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StorageError)
    return storage_problem(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_problem(exc)


def validation_problem(exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in exc.errors()
    ]
    fields = ", ".join(".".join(str(part) for part in err["loc"]) for err in errors)
    return problem(422, f"invalid request: {fields}", code="validation_error", errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return problem(exc.status_code, str(exc.detail), headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "an unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StorageError, _storage_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

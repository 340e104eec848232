"""Typed errors of the SDK, one per kind of problem document (RFC 9457) the API answers with."""

from __future__ import annotations

from typing import Any

import httpx


class APIError(Exception):
    """A problem answer: `status`, the stable `code`, the `detail`, per-field `errors` (422) and the raw body."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str = "",
        errors: list[dict[str, Any]] | None = None,
        retry_after_s: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.errors = errors or []
        self.retry_after_s = retry_after_s
        self.body = body or {}


class AuthenticationError(APIError):
    """401: no API key, or one the service does not know (or has revoked)."""


class PermissionDeniedError(APIError):
    """403: the key may not do this (another knowledge base, a URL the tenant's policy refuses)."""


class NotFoundError(APIError):
    """404: no such task (or not the key's tenant's)."""


class ConflictError(APIError):
    """409: an Idempotency-Key reused with another body, or one still in use by a racing request."""


class InvalidRequestError(APIError):
    """400 or 422: the request is wrong; `errors` names each field at fault."""


class PayloadTooLargeError(APIError):
    """413: the body is larger than the service takes."""


class RateLimitError(APIError):
    """429: rate limit or quota; raised once the client's retry budget is spent."""


class ServiceUnavailableError(APIError):
    """503 (storage or queue down) or another 5xx; raised once the retry budget is spent."""


class APIConnectionError(APIError):
    """The service could not be reached, or did not answer in time."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: InvalidRequestError,
    429: RateLimitError,
}


def retry_after_of(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (the delay form; a date or garbage gives None)."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_from(response: httpx.Response) -> APIError:
    """The typed error of a 4xx/5xx answer, from its problem document (or its status when it has none)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": response.text[:500]}
    kind = _BY_STATUS.get(response.status_code, ServiceUnavailableError if response.status_code >= 500 else APIError)
    return kind(
        response.status_code,
        str(body.get("code") or "error"),
        str(body.get("detail") or response.reason_phrase),
        title=str(body.get("title") or ""),
        errors=body.get("errors") if isinstance(body.get("errors"), list) else None,
        retry_after_s=retry_after_of(response),
        body=body,
    )

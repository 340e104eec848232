"""The one exception tree of scrapeq (`ScrapeqError`); the producer maps each class to a problem answer in one place."""

from __future__ import annotations

from typing import Any, ClassVar


class ScrapeqError(Exception):
    """Root of every error scrapeq raises on purpose.

    ScrapeqError
    ├── ApiError                  (carries an HTTP status and a stable `code`)
    │   ├── Unauthorized          401
    │   ├── Forbidden             403
    │   ├── NotFound              404
    │   ├── PayloadTooLarge       413
    │   ├── InvalidInput          422
    │   │   └── UrlNotAllowed     422 (the network guard refuses the URL's host)
    │   ├── IdempotencyMismatch   422
    │   ├── IdempotencyKeyInUse   409 (the original request with that key is still being written)
    │   ├── RateLimited           429
    │   ├── QuotaExceeded         429 (or 422 when no retry can pass; the body names the quota)
    │   └── ServiceUnavailable    503
    ├── StorageError              a backend failed (KV or queue)
    ├── BackupError               a backup cannot be read or restored (corrupt, truncated, wrong tenant)
    └── FetchError                one page could not be fetched (a per-page error, never a task crash)
        ├── BlockedAddress        the network guard refused the destination
        ├── FetchTimeout
        ├── TooLarge
        ├── TooManyRedirects
        ├── UnsupportedContentType  a media type the caller does not accept (or binary data)
        ├── UnsupportedEncoding     a Content-Encoding we cannot inflate in bounded steps
        ├── BadResponse         the answer broke HTTP: oversized header block, truncated body, corrupt gzip...
        └── ConnectFailed       DNS, TCP or TLS failure, or the connection dropped
    """


class ApiError(ScrapeqError):
    """An error the API reports to the client as an RFC 9457 problem."""

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"
    code: ClassVar[str] = "bad_request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class Unauthorized(ApiError):
    """Missing, malformed, unknown, revoked or expired API key."""

    status, title, code = 401, "Unauthorized", "unauthorized"


class Forbidden(ApiError):
    """The key may not use this knowledge base or target domain."""

    status, title, code = 403, "Forbidden", "forbidden"


class NotFound(ApiError):
    """Unknown resource, or one that belongs to another tenant (never revealed)."""

    status, title, code = 404, "Not found", "not_found"


class PayloadTooLarge(ApiError):
    """The request body exceeds the configured limit."""

    status, title, code = 413, "Payload too large", "payload_too_large"


class InvalidInput(ApiError):
    """The request is well-formed JSON but not acceptable."""

    status, title, code = 422, "Invalid input", "invalid_input"


class UrlNotAllowed(InvalidInput):
    """The URL's host is an address the network guard refuses."""

    code = "url_not_allowed"


class IdempotencyMismatch(ApiError):
    """An Idempotency-Key was reused with a different request body."""

    status, title, code = 422, "Idempotency key reused", "idempotency_key_mismatch"


class IdempotencyKeyInUse(ApiError):
    """A request with this Idempotency-Key is still being written; its answer is the one to wait for."""

    status, title, code = 409, "Idempotency key in use", "idempotency_key_in_use"


class RateLimited(ApiError):
    """Too many requests from this client address, API key or tenant."""

    status, title, code = 429, "Too many requests", "rate_limited"


class QuotaExceeded(ApiError):
    """A tenant quota (concurrent tasks, pages per day) is used up; the body says which."""

    status, title, code = 429, "Quota exceeded", "quota_exceeded"

    def __init__(self, detail: str, *, quota: str, limit: int, status: int = 429, **kwargs: Any) -> None:
        super().__init__(detail, quota=quota, limit=limit, **kwargs)
        self.status = status  # type: ignore[misc]  # 422 when the request alone exceeds the quota


class ServiceUnavailable(ApiError):
    """A backend could not take the request; retrying later is safe."""

    status, title, code = 503, "Service unavailable", "service_unavailable"


class StorageError(ScrapeqError):
    """A KV or queue backend failed."""


class BackupError(ScrapeqError):
    """A backup that cannot be read or restored: corrupt or truncated, another tenant's, or a target not empty."""


class FetchError(ScrapeqError):
    """One page could not be fetched; `code` is the stable per-page error code."""

    code: ClassVar[str] = "fetch_failed"
    #: Whether trying the same URL again later may succeed.
    retryable: ClassVar[bool] = False


class BlockedAddress(FetchError):
    """The network guard refused the destination (scheme, port or address)."""

    code = "blocked_address"


class FetchTimeout(FetchError):
    """Connect, read or the per-page total deadline expired."""

    code, retryable = "timeout", True


class TooLarge(FetchError):
    """The body exceeded the size cap after decompression."""

    code = "too_large"


class TooManyRedirects(FetchError):
    """The redirect chain was longer than allowed or looped."""

    code = "too_many_redirects"


class UnsupportedContentType(FetchError):
    """The response's media type is not one the caller accepts (e.g. an image when HTML was wanted)."""

    code = "unsupported_content_type"


class UnsupportedEncoding(FetchError):
    """A Content-Encoding other than gzip / deflate / identity, or more than two stacked layers."""

    code = "unsupported_encoding"


class BadResponse(FetchError):
    """The server's answer broke HTTP: a header block over the client's limit, malformed framing, a body
    shorter than its Content-Length, a corrupt compressed body. Retryable: truncation is often transient."""

    code, retryable = "bad_response", True


class ConnectFailed(FetchError):
    """DNS, TCP or TLS failure, or the connection dropped."""

    code, retryable = "connect_error", True

"""The Python SDK: `Client` and `AsyncClient` over the HTTP API, typed models in and out, typed errors."""

from __future__ import annotations

from scrapeq.client.aio import AsyncClient
from scrapeq.client.calls import RetryPolicy
from scrapeq.client.exceptions import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from scrapeq.client.sync import Client

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RetryPolicy",
    "ServiceUnavailableError",
]

"""The SDK's retry rule: which failures are tried again, for how long, and the typed error once it stops."""

from __future__ import annotations

import httpx
import pytest

from scrapeq.client import APIConnectionError, Client, InvalidRequestError, RateLimitError, RetryPolicy
from scrapeq.client.calls import pause_or_raise

REQUEST = httpx.Request("GET", "http://127.0.0.1/tasks")


def answer(status: int, **headers: str) -> httpx.Response:
    body = {"type": "urn:x", "title": "t", "status": status, "detail": "d", "code": "c"}
    return httpx.Response(status, json=body, headers=headers, request=REQUEST)


def test_a_429_waits_its_retry_after_and_a_422_is_raised_at_once() -> None:
    policy = RetryPolicy()
    assert pause_or_raise(policy, 0, 0.0, answer(429, **{"Retry-After": "2"})) == 2.0
    assert pause_or_raise(policy, 1, 0.0, answer(503)) == 1.0  # no Retry-After: 0.5 s, 1 s, 2 s, ...
    with pytest.raises(InvalidRequestError):
        pause_or_raise(policy, 0, 0.0, answer(422))


def test_the_budget_ends_the_retries() -> None:
    policy = RetryPolicy(max_retries=5, max_wait_s=30, budget_s=60)
    with pytest.raises(RateLimitError):
        pause_or_raise(policy, 0, 0.0, answer(429, **{"Retry-After": "31"}))  # longer than one wait may be
    with pytest.raises(RateLimitError):
        pause_or_raise(policy, 2, 55.0, answer(429, **{"Retry-After": "10"}))  # past the whole budget
    with pytest.raises(RateLimitError):
        pause_or_raise(policy, 5, 0.0, answer(429, **{"Retry-After": "0"}))  # out of retries


def test_an_unreachable_service_is_tried_again_then_an_api_connection_error() -> None:
    tries: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        raise httpx.ConnectError("refused", request=request)

    policy = RetryPolicy(max_retries=2, base_s=0.01)
    with Client("http://127.0.0.1:9", "k", retry=policy, transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(APIConnectionError) as failed:
            client.tasks()
    assert len(tries) == 3 and "ConnectError" in failed.value.detail

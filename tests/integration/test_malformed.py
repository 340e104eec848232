"""No input to the API produces a 500: a table of malformed requests, each answered with a 4xx problem."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import Caller

VALID = {"url": "http://127.0.0.1:9/", "knowledge_base_id": "kb_a1"}


def body(**changes: object) -> bytes:
    data: dict[str, object] = dict(VALID)
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return json.dumps(data).encode()


# (id, method, path, raw body or None, extra headers, expected status)
CASES: list[tuple[str, str, str, bytes | None, dict[str, str], int]] = [
    ("empty-body", "POST", "/scrape", b"", {}, 422),
    ("not-json", "POST", "/scrape", b"url=http://x", {}, 422),
    ("truncated-json", "POST", "/scrape", b'{"url": "http://x', {}, 422),
    ("json-array", "POST", "/scrape", b"[1, 2, 3]", {}, 422),
    ("json-string", "POST", "/scrape", b'"http://example.com"', {}, 422),
    ("json-null", "POST", "/scrape", b"null", {}, 422),
    ("invalid-utf8", "POST", "/scrape", b'{"url": "\xff\xfe"}', {}, 400),
    ("nul-in-url", "POST", "/scrape", body(url="http://exa\u0000mple.com/"), {}, 422),
    ("missing-url", "POST", "/scrape", body(url=...), {}, 422),
    ("missing-kb", "POST", "/scrape", body(knowledge_base_id=...), {}, 422),
    ("url-number", "POST", "/scrape", body(url=42), {}, 422),
    ("url-javascript", "POST", "/scrape", body(url="javascript:alert(1)"), {}, 422),
    ("url-file", "POST", "/scrape", body(url="file:///etc/passwd"), {}, 422),
    ("url-no-host", "POST", "/scrape", body(url="http:///path"), {}, 422),
    ("url-bad-port", "POST", "/scrape", body(url="http://example.com:99999/"), {}, 422),
    ("url-space", "POST", "/scrape", body(url=" http://example.com/"), {}, 422),
    ("url-huge", "POST", "/scrape", body(url="http://example.com/" + "a" * 5000), {}, 422),
    ("url-bad-ipv6", "POST", "/scrape", body(url="http://[::1/"), {}, 422),
    ("limit-string", "POST", "/scrape", body(limit="many"), {}, 422),
    ("limit-negative", "POST", "/scrape", body(limit=-1), {}, 422),
    ("limit-float", "POST", "/scrape", body(limit=2.5), {}, 422),
    ("limit-huge-int", "POST", "/scrape", body(limit=10**40), {}, 422),
    ("depth-negative", "POST", "/scrape", body(max_depth=-3), {}, 422),
    ("formats-empty", "POST", "/scrape", body(formats=[]), {}, 422),
    ("formats-not-list", "POST", "/scrape", body(formats="markdown"), {}, 422),
    ("include-not-list", "POST", "/scrape", body(include_paths="docs"), {}, 422),
    ("regex-unbalanced", "POST", "/scrape", body(exclude_paths=["[a-"]), {}, 422),
    ("unknown-field", "POST", "/scrape", body(crawl_everything=True), {}, 422),
    ("webhook-not-object", "POST", "/scrape", body(webhook="http://hook"), {}, 422),
    ("webhook-bad-url", "POST", "/scrape", body(webhook={"url": "gopher://x"}), {}, 422),
    (
        "webhook-bad-event",
        "POST",
        "/scrape",
        body(webhook={"url": "https://h.example/", "events": ["x"]}),
        {},
        422,
    ),
    ("kb-weird-chars", "POST", "/scrape", body(knowledge_base_id="kb/../../x"), {}, 422),
    ("deeply-nested", "POST", "/scrape", b"[" * 5000 + b"]" * 5000, {}, 400),
    (
        "form-content-type",
        "POST",
        "/scrape",
        b"url=http://x",
        {"content-type": "application/x-www-form-urlencoded"},
        422,
    ),
    ("list-limit-zero", "GET", "/tasks?limit=0", None, {}, 422),
    ("list-limit-huge", "GET", "/tasks?limit=1000000", None, {}, 422),
    ("list-bad-status", "GET", "/tasks?status=sleeping", None, {}, 422),
    ("list-bad-cursor", "GET", "/tasks?cursor=%%%not-base64", None, {}, 422),
    ("list-json-cursor", "GET", "/tasks?cursor=eyJ4IjoxfQ", None, {}, 422),
    ("list-bad-kb", "GET", "/tasks?knowledge_base_id=%00", None, {}, 422),
    ("pages-bad-cursor", "GET", "/tasks/" + "0" * 32 + "/pages?cursor=!!", None, {}, 404),
    ("unknown-route", "GET", "/nope", None, {}, 404),
    ("wrong-method", "PUT", "/scrape", body(), {}, 405),
    ("huge-task-id", "GET", "/tasks/" + "a" * 5000, None, {}, 422),
]


@pytest.mark.parametrize(
    ("method", "path", "raw", "headers", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
async def test_malformed_requests_get_a_4xx_problem_never_a_500(
    api: httpx.AsyncClient,
    alice: Caller,
    method: str,
    path: str,
    raw: bytes | None,
    headers: dict[str, str],
    expected: int,
) -> None:
    all_headers = {**alice.headers, "Content-Type": "application/json", **headers}
    response = await api.request(method, path, content=raw, headers=all_headers)
    assert response.status_code == expected, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == expected


def test_the_table_has_at_least_25_malformed_requests() -> None:
    assert len(CASES) >= 25

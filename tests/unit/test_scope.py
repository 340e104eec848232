"""Crawl scope: host, subdomains, path filters, depth."""

from __future__ import annotations

import pytest

from consumer.crawl.scope import Scope
from shared.models import ScrapeRequest


def scope(**fields: object) -> Scope:
    return Scope.from_request(
        ScrapeRequest.model_validate({"url": "https://www.example.com/docs/", "knowledge_base_id": "kb", **fields})
    )


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://www.example.com/docs/a", True),
        ("http://www.example.com/b", True),
        ("https://example.com/docs/a", False),
        ("https://blog.example.com/", False),
        ("https://www.example.com:8443/docs/a", False),
        ("https://www.example.org/", False),
        ("https://evilwww.example.com/", False),
    ],
)
def test_same_host_scope(url: str, allowed: bool) -> None:
    assert scope().allows(url, 1) is allowed


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://blog.example.com/", True),
        ("https://example.com/", True),
        ("https://a.b.example.com/", True),
        ("https://notexample.com/", False),
        ("https://example.com.evil.test/", False),
    ],
)
def test_subdomain_scope(url: str, allowed: bool) -> None:
    assert scope(allow_subdomains=True).allows(url, 1) is allowed


def test_include_and_exclude_patterns_apply_to_the_path() -> None:
    s = scope(include_paths=["^/docs/"], exclude_paths=[r"\.pdf$", "/private/"])
    assert s.allows("https://www.example.com/docs/a", 1)
    assert not s.allows("https://www.example.com/blog/a", 1)
    assert not s.allows("https://www.example.com/docs/a.pdf", 1)
    assert not s.allows("https://www.example.com/docs/private/x", 1)


def test_the_start_url_is_always_in_scope() -> None:
    assert scope(include_paths=["^/nothing/"]).allows("https://www.example.com/docs/", 0)


def test_max_depth_bounds_discovered_links() -> None:
    s = scope(max_depth=2)
    assert s.allows("https://www.example.com/a", 2)
    assert not s.allows("https://www.example.com/a", 3)

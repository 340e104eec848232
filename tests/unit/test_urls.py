"""URL normalisation and link resolution."""

from __future__ import annotations

import pytest

from shared.urls import InvalidURL, normalize, resolve_link, url_key, validate_submitted_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM", "http://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com/a#frag", "http://example.com/a"),
        ("http://example.com/a?", "http://example.com/a"),
        ("http://example.com/a?b=2&a=1", "http://example.com/a?a=1&b=2"),
        ("http://example.com/a?utm_source=x&utm_medium=y", "http://example.com/a"),
        ("http://example.com/a?id=3&utm_campaign=z&gclid=1", "http://example.com/a?id=3"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/../a", "http://example.com/a"),
        ("http://example.com/a/.", "http://example.com/a/"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/%7euser/%2f", "http://example.com/%7Euser/%2F"),
        ("http://example.com/ünï", "http://example.com/%C3%BCn%C3%AF"),
        ("http://bücher.example/", "http://xn--bcher-kva.example/"),
        ("http://example.com./", "http://example.com/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://127.0.0.1:9/x", "http://127.0.0.1:9/x"),
    ],
)
def test_normalize_gives_one_form_per_page(url: str, expected: str) -> None:
    assert normalize(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "mailto:a@example.com",
        "http://user@example.com/",
        "http:///nohost",
        "http://example.com:99999/",
        "http://" + "a" * 3000 + ".com/",
        "/relative/only",
    ],
)
def test_normalize_refuses_what_cannot_be_fetched(url: str) -> None:
    assert normalize(url) is None


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("/docs/a.html", "http://site.test/docs/a.html"),
        ("b.html", "http://site.test/blog/b.html"),
        ("../docs/c.html", "http://site.test/docs/c.html"),
        ("./d.html#top", "http://site.test/blog/d.html"),
        ("//other.test/x", "http://other.test/x"),
        ("https://site.test/y?utm_source=a", "https://site.test/y"),
        ("  /spaced.html \n", "http://site.test/spaced.html"),
        ("/ta\tb.html", "http://site.test/tab.html"),
        ("\\\\evil.test\\x", "http://evil.test/x"),
        ("#only-fragment", None),
        ("mailto:a@b.c", None),
        ("javascript:alert(1)", None),
        ("data:text/html,hi", None),
        ("tel:+123", None),
        ("", None),
        ("http://[invalid", None),
    ],
)
def test_resolve_link_behaves_like_a_browser(href: str, expected: str | None) -> None:
    assert resolve_link(href, "http://site.test/blog/page.html") == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (" http://example.com/", "whitespace"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/\x00", "control"),
        ("gopher://example.com/", "scheme"),
        ("http://a:b@example.com/", "user information"),
        ("http:///x", "host"),
    ],
)
def test_submitted_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(InvalidURL, match=reason):
        validate_submitted_url(url)


def test_url_key_is_short_stable_and_distinct() -> None:
    assert url_key("http://a.test/") == url_key("http://a.test/")
    assert url_key("http://a.test/") != url_key("http://a.test/b")
    assert len(url_key("http://a.test/")) == 16

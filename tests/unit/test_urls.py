"""URL normalisation and link resolution."""

from __future__ import annotations

import random

import pytest

from shared.urls import (
    _UNHANDLED,
    InvalidURL,
    _resolve_plain,
    join_and_normalize,
    normalize,
    resolve_link,
    url_key,
    validate_submitted_url,
)


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


RESOLVE_CASES: dict[str, str | None] = {
    "/docs/a.html": "http://site.test/docs/a.html",
    "b.html": "http://site.test/blog/b.html",
    "../docs/c.html": "http://site.test/docs/c.html",
    "./d.html#top": "http://site.test/blog/d.html",
    "//other.test/x": "http://other.test/x",
    "https://site.test/y?utm_source=a": "https://site.test/y",
    "  /spaced.html \n": "http://site.test/spaced.html",
    "/ta\tb.html": "http://site.test/tab.html",
    "\\\\evil.test\\x": "http://evil.test/x",
    "#only-fragment": None,
    "mailto:a@b.c": None,
    "javascript:alert(1)": None,
    "data:text/html,hi": None,
    "tel:+123": None,
    "": None,
    "http://[invalid": None,
}


@pytest.mark.parametrize(("href", "expected"), RESOLVE_CASES.items())
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


# ---- resolve_link's fast path agrees with urljoin + normalize --------------------------------------

BASES = [
    "http://site.test/blog/page.html",
    "http://site.test/blog/",
    "http://site.test",
    "http://127.0.0.1:18089/docs/a-b/c.html?x=1#f",
    "https://Example.COM:443/x/y/z.html?q=1",
    "HTTP://site.test./a//b/../c/",
    "http://[::1]:8080/x/",
    "http://bücher.example/ü/x",
    "http://h.test/a/b;p/c",
    "http://user@h.test/x",
    "http://h.test:99999/x",
    "ftp://h.test/x",
    "/relative/base.html",
    "",
    "http://h.test/" + "a" * 2050,
]
# Plain pieces (the fast path's shapes, with every dot-segment oddity) and pieces that must take urljoin.
PLAIN_SEGMENTS = ["", ".", "..", "a", "b.html", ".hidden", "..x", "x..", "~u", "it's", "(p)", "a+b", "@", "=", "!$*,"]
PLAIN_SEGMENTS += ["A-Z_9", "a" * 40]
ODD_SEGMENTS = [*PLAIN_SEGMENTS, "%7e", "%zz", "a:b", "p;q", "sp ace", "é", "[x]", "\\", "\x01"]
PLAIN_PREFIXES = ["", "/", "./", "../", "../../", "/../", "http://site.test/", "http://127.0.0.1:18089/"]
PLAIN_PREFIXES += ["https://example.com/", "http://[::1]:8080/", "https://Other.TEST:443/", "http://o.test.:8080/"]
PLAIN_PREFIXES += ["http://o.test:0/", "http://o.test:/", "http://:80/", "http://o.test:99999/", "http://o-.test:1:2/"]
ODD_PREFIXES = [*PLAIN_PREFIXES, "//", "http://site.test", "HTTP://site.test/", "?", "#", "\t/", " ", "\x01/"]
QUERIES = ["", "?", "?a=1&b=2", "?b=2&a=1&gclid=3", "?utm_source=x", "?x=%7e", "?q=a b", "?&&", "??", "?é=1", "?a=/?:@"]
FRAGMENTS = ["", "#", "#f", "#a?b", "#/x", "#" + "f" * 2100]


def reference_resolve(href: str, base: str) -> str | None:
    """resolve_link as it was before its fast path: clean up, refuse other schemes, urljoin, normalize."""
    href = href.strip().replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")
    if not href or href.startswith("#"):
        return None
    head = href[:11].lower()
    if ":" in head and not head.startswith(("http:", "https:")):
        return None
    return join_and_normalize(href, base)


def random_href(rng: random.Random) -> str:
    plain = rng.random() < 0.5
    segments, prefixes = (PLAIN_SEGMENTS, PLAIN_PREFIXES) if plain else (ODD_SEGMENTS, ODD_PREFIXES)
    path = "/".join(rng.choice(segments) for _ in range(rng.randrange(0, 6)))
    return rng.choice(prefixes) + path + rng.choice(QUERIES) + rng.choice(FRAGMENTS)


@pytest.mark.parametrize("base", BASES)
def test_resolve_link_gives_what_urljoin_and_normalize_give(base: str) -> None:
    rng = random.Random(base)
    hrefs = [random_href(rng) for _ in range(2000)] + list(RESOLVE_CASES) + ["../" * 40 + "x", "/" * 5 + "x"]
    for href in hrefs:
        assert resolve_link(href, base) == reference_resolve(href, base), (href, base)


@pytest.mark.parametrize(
    "href",
    [
        *("/a/b.html", "b.html", "../x.html", "./d.html#top", "/a?b=2&a=1", "sub/dir/", "http://site.test/a/../b"),
        "https://Other.test:443/x?utm_source=y#z",
    ],
)
def test_plain_hrefs_resolve_without_urljoin(href: str) -> None:
    assert _resolve_plain(href, "http://site.test/blog/page.html") != _UNHANDLED

"""URL parsing and normalisation (pure). Every URL is normalised once, before de-duplication and fetching."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote, urljoin, urlsplit

MAX_URL_LENGTH = 2083
SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}
TRACKING_PARAMS = frozenset({"gclid", "fbclid", "msclkid", "dclid", "mc_cid", "mc_eid", "_ga", "yclid"})

_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = "/?%:@!$&'()*+,;=-._~"
_PERCENT = re.compile(r"%[0-9a-fA-F]{2}")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")
# Paths and queries that quote() leaves as they are: unreserved and safe characters, no "%".
_QUOTED_PATH = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=\-._~]*")
_QUOTED_QUERY = re.compile(r"[A-Za-z0-9/?:@!$&'()*+,;=\-._~]*")


class InvalidURL(ValueError):
    """A URL that cannot be fetched: bad syntax, scheme, host, port or length."""


def validate_submitted_url(value: str) -> str:
    """Check a URL given by a client and return its normal form; raise `InvalidURL` with the reason."""
    if _CONTROL.search(value):
        raise InvalidURL("URL must not contain whitespace or control characters")
    parts = urlsplit(value)
    if parts.scheme.lower() not in SCHEMES:
        raise InvalidURL("URL scheme must be http or https")
    if "@" in parts.netloc:
        raise InvalidURL("URL must not contain user information")
    if not parts.hostname:
        raise InvalidURL("URL must have a host")
    normal = normalize(value)
    if normal is None:
        raise InvalidURL("URL is not a valid absolute http(s) URL")
    return normal


def resolve_link(href: str, base: str) -> str | None:
    """Resolve an `href` found on page `base` the way a browser does, then normalise it (None: not crawlable)."""
    href = href.strip()
    if "\t" in href or "\n" in href or "\r" in href:  # str.translate is slow even when it changes nothing
        href = href.translate(_TAB_NEWLINE)
    if "\\" in href:
        href = href.replace("\\", "/")
    if not href or href.startswith("#"):
        return None
    head = href[:11].lower()
    if ":" in head and not head.startswith(("http:", "https:")):
        return None  # mailto:, javascript:, data:, tel:, ...
    resolved = _resolve_plain(href, base)
    return join_and_normalize(href, base) if resolved == _UNHANDLED else resolved


def join_and_normalize(href: str, base: str) -> str | None:
    """The reference resolution, `normalize(urljoin(base, href))`; `_resolve_plain` must agree with it."""
    try:
        return normalize(urljoin(base, href))
    except ValueError:
        return None


def normalize(url: str) -> str | None:
    """Normal form of an absolute http(s) URL, or None if it is not one.

    Normal form: lower-case scheme and host (IDNA for non-ASCII hosts), no default port, no userinfo, no
    fragment, dot segments removed, unsafe characters percent-encoded with upper-case hex, empty path → "/",
    query parameters sorted with tracking parameters (utm_*, gclid, fbclid, ...) dropped, empty query dropped.
    """
    if len(url) > MAX_URL_LENGTH:
        return None
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES or "@" in parts.netloc:
            return None
        host = _normal_host(parts.hostname)
        port = parts.port
    except (ValueError, UnicodeError):
        return None
    if host is None:
        return None
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _normal_path(parts.path)
    query = _normal_query(parts.query)
    normal = f"{scheme}://{netloc}{path}?{query}" if query else f"{scheme}://{netloc}{path}"
    return normal if len(normal) <= MAX_URL_LENGTH else None


# ---- the fast path of resolve_link ----------------------------------------------------------------
# Most hrefs are a plain path ("/a/b.html", "x.html", "../x", "http://host/a") with maybe a query and a
# fragment. For those, urljoin's own path algorithm (the same from Python 3.11 to 3.14) and normalize's
# steps are replayed without urllib's parsing, at a tenth of the cost. Anything else (a ":" or ";" or "%" or
# non-ASCII in the path, "//host", an unusual host, a near-limit length, an odd base) takes urljoin.
_UNHANDLED = ""  # never a resolved URL
_PLAIN_HREF = re.compile(r"([A-Za-z0-9/@!$&'()*+,=\-._~]*)(?:\?([^#]*))?(?:#.*)?", re.S)
_PLAIN_ORIGIN = re.compile(r"https?://[A-Za-z0-9.:\-]+(?=/)")
_origins: dict[str, str | None] = {}  # scheme://netloc as written -> its normal form
_bases: dict[str, tuple[str, list[str]] | None] = {}  # page URL -> its normal origin, its directory segments


def _resolve_plain(href: str, base: str) -> str | None:
    """`join_and_normalize(href, base)` for a plain href, else `_UNHANDLED`."""
    known = _base_parts(base)
    if known is None or len(href) + len(base) + 4 > MAX_URL_LENGTH:  # joining never gets near the limit
        return _UNHANDLED
    absolute = _PLAIN_ORIGIN.match(href)
    if absolute is not None:  # urljoin keeps it as it is (the base only has to parse)
        origin = _normal_origin(absolute.group())
        match = _PLAIN_HREF.fullmatch(href, absolute.end())
        if origin is None or match is None:
            return _UNHANDLED
        path, query = match.groups()
    else:
        origin, directory = known
        match = _PLAIN_HREF.fullmatch(href)
        if match is None:
            return _UNHANDLED
        path, query = match.groups()
        if path.startswith("//") or not path:  # another host; or "?q", whose empty query differs by version
            return _UNHANDLED
        path = _join_path(directory, path)
    query = _normal_query(query) if query else ""
    normal = f"{origin}{_normal_path(path)}?{query}" if query else f"{origin}{_normal_path(path)}"
    return normal if len(normal) <= MAX_URL_LENGTH else None


def _normal_origin(written: str) -> str | None:
    """Normal form of "scheme://netloc" (cached: a site links to few hosts)."""
    try:
        return _origins[written]
    except KeyError:
        if len(_origins) >= 1024:
            _origins.clear()
    normal = normalize(written + "/")
    origin = _origins[written] = normal[:-1] if normal is not None else None
    return origin


def _base_parts(base: str) -> tuple[str, list[str]] | None:
    """Per base: its normal origin and its directory's path segments, as urljoin splits them."""
    try:
        return _bases[base]
    except KeyError:
        if len(_bases) >= 64:
            _bases.clear()
    try:
        parts = urlsplit(base)
    except ValueError:
        parts = None
    known = None
    if parts is not None and parts.netloc and ";" not in parts.path:  # 3.11's urljoin splits ";params" off
        origin = _normal_origin(f"{parts.scheme}://{parts.netloc}")
        if origin is not None:
            directory = parts.path.split("/")
            if directory[-1]:
                del directory[-1]
            known = (origin, directory)
    _bases[base] = known
    return known


def _join_path(directory: list[str], path: str) -> str:
    """urljoin's path resolution, then the leading "/" that urlunsplit adds below a host."""
    if path[:1] == "/":
        segments = path.split("/")
    else:
        segments = directory + path.split("/")
        segments[1:-1] = filter(None, segments[1:-1])
    resolved: list[str] = []
    for segment in segments:
        if segment == "..":
            if resolved:
                resolved.pop()
        elif segment != ".":
            resolved.append(segment)
    if segments[-1] in (".", ".."):
        resolved.append("")
    joined = "/".join(resolved) or "/"
    return joined if joined[0] == "/" else "/" + joined


def url_key(url: str) -> str:
    """A short, stable digest of a normalised URL, for de-duplication sets."""
    return hashlib.blake2b(url.encode(), digest_size=8).hexdigest()


def host_of(url: str) -> str:
    """The host (no port) of a normalised URL."""
    return urlsplit(url).hostname or ""


def _normal_host(host: str | None) -> str | None:
    if not host:
        return None
    if ":" in host:  # IPv6 literal: urlsplit dropped the brackets
        return f"[{host}]"
    host = host.rstrip(".")
    if not host:
        return None
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    if _CONTROL.search(host) or any(c in host for c in "/\\%?#<>^|\"'`{}"):
        return None
    return host


def _normal_path(path: str) -> str:
    if not path:
        return "/"
    if "/." in path or path.startswith("."):
        path = _remove_dot_segments(path)
    if _QUOTED_PATH.fullmatch(path) is None:  # quote() returns such a path unchanged, only slower
        path = quote(path, safe=_SAFE_PATH)
    if "%" in path:
        path = _PERCENT.sub(lambda m: m.group(0).upper(), path)
    return path if path.startswith("/") else "/" + path


def _normal_query(query: str) -> str:
    if not query:
        return ""
    params = [p for p in query.split("&") if p and not _is_tracking(p)]
    if not params:
        return ""
    params.sort()
    normal = "&".join(params)
    if _QUOTED_QUERY.fullmatch(normal) is None:
        normal = quote(normal, safe=_SAFE_QUERY)
    if "%" in normal:
        normal = _PERCENT.sub(lambda m: m.group(0).upper(), normal)
    return normal


def _is_tracking(param: str) -> bool:
    name = param.split("=", 1)[0].lower()
    return name.startswith("utm_") or name in TRACKING_PARAMS


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4."""
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(output) > 1:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if path.endswith(("/.", "/..")):
        output.append("")
    result = "/".join(output)
    return result if result.startswith("/") else "/" + result

"""URL parsing and normalisation (pure). Every URL is normalised once, before de-duplication and fetching.

Normal form: lower-case scheme and host (IDNA for non-ASCII hosts), no default port, no userinfo, no
fragment, dot segments removed, unsafe characters percent-encoded with upper-case hex, empty path → "/",
query parameters sorted with tracking parameters (utm_*, gclid, fbclid, ...) dropped, empty query dropped.
"""

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
    href = href.strip().translate(_TAB_NEWLINE).replace("\\", "/")
    if not href or href.startswith("#"):
        return None
    head = href[:11].lower()
    if ":" in head and not head.startswith(("http:", "https:")):
        return None  # mailto:, javascript:, data:, tel:, ...
    try:
        return normalize(urljoin(base, href))
    except ValueError:
        return None


def normalize(url: str) -> str | None:
    """Normal form of an absolute http(s) URL, or None if it is not one."""
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
    normal = quote("&".join(params), safe=_SAFE_QUERY)
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

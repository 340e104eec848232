"""Fetching one page: redirects by hand, a whole-page deadline, bounded inflation, a content-type filter.

Every failure leaves as a `FetchError` subclass; HTTP error statuses are results, not exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import zlib
from collections.abc import AsyncIterator, Container, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import httpx

from consumer.fetch.guard import AddressRefused
from shared.errors import (
    BadResponse,
    BlockedAddress,
    ConnectFailed,
    FetchError,
    FetchTimeout,
    TooLarge,
    TooManyRedirects,
    UnsupportedContentType,
    UnsupportedEncoding,
)
from shared.urls import SCHEMES, host_of, normalize

if TYPE_CHECKING:  # annotations only: the Worker's fetch path (and its Pyodide tests) runs without pydantic
    from shared.settings import Settings

log = logging.getLogger(__name__)

HTML_TYPES: frozenset[str] = frozenset({"text/html", "application/xhtml+xml", "text/plain"})
#: Declared types whose first bytes are checked for binary data (a binary body labelled text/html).
TEXT_TYPES = HTML_TYPES
BINARY_TYPE = "application/octet-stream"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Bytes looked at to guess the type of a response that names none.
SNIFF_BYTES = 512
MAX_ENCODING_LAYERS = 2

_STEP = 64 * 1024  # the most one inflate call may produce: what bounds memory against bombs
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_LOCATION_NOISE = re.compile("[\t\n\r]")
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")  # WHATWG MIME sniffing's "binary data bytes"
_WIDE_CHARSET = re.compile(r"utf-?(16|32)")
_WIDE_BOMS = (b"\xfe\xff", b"\xff\xfe")
_HTML_START = re.compile(
    rb"(?:\xef\xbb\xbf)?\s*<(?:!--|(?:!doctype\s+html|html|head|body|script|iframe|h1|div|font|table|a|style"
    rb"|title|b|br|p)[\s>])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FetchResult:
    url: str
    final_url: str
    status_code: int
    #: Lower-case names; repeated headers joined with ", ".
    headers: dict[str, str]
    #: Media type, lower-case, without parameters; sniffed when the server named none.
    content_type: str
    charset: str | None
    #: Decoded (inflated) body; empty when an error status came with a type the caller does not accept.
    body: bytes
    redirects: int


class Fetcher:
    """Fetches pages through an injected (guarded) client; `fetch` never raises anything but `FetchError`s."""

    def __init__(self, client: httpx.AsyncClient, *, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def fetch(
        self,
        url: str,
        *,
        accept: Container[str] = HTML_TYPES,
        max_redirects: int | None = None,
        truncate_at: int | None = None,
    ) -> FetchResult:
        """Fetch `url`, following at most `max_redirects` hops (default: the setting).

        `truncate_at`: keep only that many (inflated) bytes of the body and stop reading, instead of failing
        with `TooLarge` past the body cap (robots.txt: only the first 500 KiB are parsed anyway).
        """
        # httpx's timeouts are per network operation; only this deadline stops a slow trickle (httpx#1450).
        deadline = self._settings.fetch_total_timeout_s
        limits = _Limits(
            accept=accept,
            max_redirects=self._settings.fetch_max_redirects if max_redirects is None else max_redirects,
            max_bytes=truncate_at or self._settings.fetch_max_body_bytes,
            truncate=truncate_at is not None,
        )
        try:
            async with asyncio.timeout(deadline):
                return await self._follow(url, limits)
        except TimeoutError:
            raise FetchTimeout(f"page not fetched within {deadline:g} s") from None

    async def _follow(self, url: str, limits: _Limits) -> FetchResult:
        # Redirects by hand: every hop is re-validated here and address-checked by the client's backend,
        # and nothing (extensions, auth) is carried across hosts as httpx's own following would.
        current = _fetchable(url, what="URL")
        seen = {current}
        redirects = 0
        while True:
            async with self._response(current) as response:
                location = response.headers.get("location")
                if response.status_code not in REDIRECT_STATUSES or not location:
                    return await self._result(url, current, response, redirects, limits)
            if redirects >= limits.max_redirects:
                raise TooManyRedirects(f"more than {redirects} redirects")
            current = _fetchable(_join(current, location), what="redirect target")
            if current in seen:
                raise TooManyRedirects(f"redirect loop at {current}")
            seen.add(current)
            redirects += 1

    @contextlib.asynccontextmanager
    async def _response(self, url: str) -> AsyncIterator[httpx.Response]:
        """One streamed GET; whatever is raised while it is open is translated, and it is always closed."""
        try:
            response = await self._client.send(self._client.build_request("GET", url), stream=True)
            try:
                yield response
            finally:
                await response.aclose()
        except FetchError:
            raise
        except Exception as exc:
            raise _translate(exc, url) from exc

    async def _result(
        self, url: str, final_url: str, response: httpx.Response, redirects: int, limits: _Limits
    ) -> FetchResult:
        media, charset = _media_type(response.headers.get("content-type", ""))
        body = b""
        if media is None or _admit(media, limits.accept, response.status_code):
            body, media = await _read(response, media, charset, limits)
        return FetchResult(
            url=url,
            final_url=final_url,
            status_code=response.status_code,
            headers={name.lower(): value for name, value in response.headers.items()},
            content_type=media,
            charset=charset,
            body=body,
            redirects=redirects,
        )


@dataclass(frozen=True)
class _Limits:
    accept: Container[str]
    max_redirects: int
    max_bytes: int
    #: Past `max_bytes`, keep what was read instead of failing.
    truncate: bool


async def _read(response: httpx.Response, media: str | None, charset: str | None, limits: _Limits) -> tuple[bytes, str]:
    """The inflated body, capped; its first bytes screened (sniffed when untyped, binary check when text)."""
    length = response.headers.get("content-length", "")
    if not limits.truncate and length.isdigit() and int(length) > limits.max_bytes:
        raise TooLarge(f"Content-Length {length} exceeds the {limits.max_bytes}-byte limit")
    decoder = _Decoder(_encodings(response.headers.get("content-encoding", "")))
    body = _Body(limits)
    screened: str | None = None
    async for raw in response.aiter_raw():
        full = body.extend(decoder.decode(raw))
        if screened is None and (len(body.data) >= SNIFF_BYTES or full):
            screened = _screen(body.data, media, charset)
            if not _admit(screened, limits.accept, response.status_code):
                return b"", screened
        if full:
            break
    if screened is None:
        screened = _screen(body.data, media, charset)
        if not _admit(screened, limits.accept, response.status_code):
            return b"", screened
    return bytes(body.data), screened


class _Body:
    """The body read so far, never past `limits.max_bytes`."""

    def __init__(self, limits: _Limits) -> None:
        self.data = bytearray()
        self._limits = limits

    def extend(self, chunks: Iterable[bytes]) -> bool:
        """Append inflated chunks; True once a truncating read is full, `TooLarge` past the cap otherwise."""
        cap = self._limits.max_bytes
        for chunk in chunks:
            room = cap - len(self.data)
            if len(chunk) > room:
                if not self._limits.truncate:
                    raise TooLarge(f"body exceeds the {cap}-byte limit")
                self.data += chunk[:room]
                return True
            self.data += chunk
        return self._limits.truncate and len(self.data) >= cap


class _Inflater:
    """One gzip or deflate layer, inflated in steps of at most `_STEP` bytes so a bomb never materialises."""

    def __init__(self, encoding: str) -> None:
        self._engine = zlib.decompressobj(_GZIP_WBITS) if encoding == "gzip" else None
        self._head = b""  # deflate: held until two bytes tell zlib framing from raw deflate

    def inflate(self, data: bytes) -> Iterator[bytes]:
        engine = self._engine
        if engine is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            # RFC 9110 says zlib framing, but many servers send raw deflate; browsers accept both.
            engine = self._engine = zlib.decompressobj(zlib.MAX_WBITS if _is_zlib(data) else -zlib.MAX_WBITS)
        while True:
            try:
                out = engine.decompress(data, _STEP)
            except zlib.error as exc:
                raise BadResponse(f"corrupt compressed body ({exc})") from None
            data = engine.unconsumed_tail
            if out:
                yield out
            if not data and len(out) < _STEP:  # a full step may leave output pending inside zlib
                return


class _Decoder:
    """The Content-Encoding layers, outermost first; each step's output is pulled through the next lazily."""

    def __init__(self, encodings: list[str]) -> None:
        self._layers = [_Inflater(encoding) for encoding in encodings]

    def decode(self, data: bytes, depth: int = 0) -> Iterator[bytes]:
        if depth == len(self._layers):
            if data:
                yield data
            return
        for out in self._layers[depth].inflate(data):
            yield from self.decode(out, depth + 1)


def _encodings(header: str) -> list[str]:
    """Layers to undo, in decoding order (the reverse of the header's)."""
    layers = [token.strip().lower() for token in header.split(",")]
    layers = ["gzip" if token == "x-gzip" else token for token in layers if token and token != "identity"]
    for token in layers:
        if token not in ("gzip", "deflate"):
            raise UnsupportedEncoding(f"content encoding {token!r} is not supported")
    if len(layers) > MAX_ENCODING_LAYERS:
        raise UnsupportedEncoding(f"{len(layers)} stacked content encodings (at most {MAX_ENCODING_LAYERS})")
    return layers[::-1]


def _is_zlib(head: bytes) -> bool:
    return head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


def _admit(media: str, accept: Container[str], status: int) -> bool:
    """Whether to read the body: other types are refused, except under an error status (body skipped)."""
    if media in accept:
        return True
    if status >= 400:
        return False
    raise UnsupportedContentType(f"content type {media} is not accepted")


def _media_type(header: str) -> tuple[str | None, str | None]:
    media, _, params = header.partition(";")
    media = media.strip().lower()
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'").lower() or None
    return (media if "/" in media else None), charset


def _screen(body: bytes | bytearray, media: str | None, charset: str | None) -> str:
    """The media type to go by: sniffed if none was declared; binary data declared as text is binary."""
    head = bytes(body[:SNIFF_BYTES])
    if media is None:
        return _sniff(head)
    if media in TEXT_TYPES and not _wide(head, charset) and _BINARY.search(head):
        return BINARY_TYPE
    return media


def _sniff(head: bytes) -> str:
    if _HTML_START.match(head):
        return "text/html"
    return BINARY_TYPE if _BINARY.search(head) else "text/plain"


def _wide(head: bytes, charset: str | None) -> bool:
    """UTF-16/32 text, where NUL bytes are normal."""
    return head.startswith(_WIDE_BOMS) or bool(charset and _WIDE_CHARSET.match(charset))


def _join(base: str, location: str) -> str:
    # As browsers read a Location: surrounding spaces, tabs and newlines dropped, backslashes as slashes.
    return urljoin(base, _LOCATION_NOISE.sub("", location.strip()).replace("\\", "/"))


def _fetchable(url: str, *, what: str) -> str:
    """The normal form of an http(s) URL, or `BlockedAddress` (other schemes, userinfo, malformed)."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme and scheme not in SCHEMES:
        raise BlockedAddress(f"{what} has scheme {scheme!r}; only http and https are fetched")
    normal = normalize(url)
    if normal is None:
        raise BlockedAddress(f"{what} is not a fetchable http(s) URL")
    return normal


def _translate(exc: Exception, url: str) -> FetchError:
    refused = AddressRefused.found_in(exc)
    if refused is not None:
        return BlockedAddress(f"refused to connect: {refused}")
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return FetchTimeout(f"timed out fetching {host_of(url)}")
    if isinstance(exc, httpx.InvalidURL):
        # httpx builds `next_request` even when not following, and fails on a hostless Location ("data:,x").
        return BlockedAddress("URL or redirect target is not a fetchable http(s) URL")
    if isinstance(exc, httpx.ProtocolError | httpx.DecodingError):
        # Oversized header blocks (h11: 100 KiB; aiohttp: 8 KiB a line, 128 lines), bad framing, truncation.
        return BadResponse(f"{host_of(url)} sent a malformed response: {str(exc)[:200] or type(exc).__name__}")
    if not isinstance(exc, httpx.HTTPError | OSError):
        log.warning("unexpected %s fetching %s", type(exc).__name__, url, exc_info=exc)
    detail = str(exc)[:200] or type(exc).__name__
    return ConnectFailed(f"fetching {host_of(url)} failed: {detail}")

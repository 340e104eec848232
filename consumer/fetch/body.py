"""A response body, bounded: Content-Encoding inflated in small steps, capped, its media type screened or sniffed."""

from __future__ import annotations

import re
import zlib
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass

import httpx

from shared.errors import BadResponse, TooLarge, UnsupportedContentType, UnsupportedEncoding

#: What a crawl reads as a page (HTML, XHTML, plain text); a body declared as one of them is also checked for
#: binary data (a binary body labelled text/html).
PAGE_TYPES: frozenset[str] = frozenset({"text/html", "application/xhtml+xml", "text/plain"})
BINARY_TYPE = "application/octet-stream"
#: Bytes looked at to guess the type of a response that names none.
SNIFF_BYTES = 512
MAX_ENCODING_LAYERS = 2

_STEP = 64 * 1024  # the most one inflate call may produce: what bounds memory against bombs
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")  # WHATWG MIME sniffing's "binary data bytes"
_WIDE_CHARSET = re.compile(r"utf-?(16|32)")
_WIDE_BOMS = (b"\xfe\xff", b"\xff\xfe")
_HTML_START = re.compile(
    rb"(?:\xef\xbb\xbf)?\s*<(?:!--|(?:!doctype\s+html|html|head|body|script|iframe|h1|div|font|table|a|style"
    rb"|title|b|br|p)[\s>])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class BodyLimits:
    """What a fetch accepts: media types, redirects, body bytes."""

    accept: Container[str]
    max_redirects: int
    max_bytes: int
    #: Past `max_bytes`, keep what was read instead of failing.
    truncate: bool


async def read_body(
    response: httpx.Response, media: str | None, charset: str | None, limits: BodyLimits
) -> tuple[bytes, str]:
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
            if not admit(screened, limits.accept, response.status_code):
                return b"", screened
        if full:
            break
    if screened is None:
        screened = _screen(body.data, media, charset)
        if not admit(screened, limits.accept, response.status_code):
            return b"", screened
    return bytes(body.data), screened


class _Body:
    """The body read so far, never past `limits.max_bytes`."""

    def __init__(self, limits: BodyLimits) -> None:
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


def admit(media: str, accept: Container[str], status: int) -> bool:
    """Whether to read the body: other types are refused, except under an error status (body skipped)."""
    if media in accept:
        return True
    if status >= 400:
        return False
    raise UnsupportedContentType(f"content type {media} is not accepted")


def media_type(header: str) -> tuple[str | None, str | None]:
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
    if media in PAGE_TYPES and not _wide(head, charset) and _BINARY.search(head):
        return BINARY_TYPE
    return media


def _sniff(head: bytes) -> str:
    if _HTML_START.match(head):
        return "text/html"
    return BINARY_TYPE if _BINARY.search(head) else "text/plain"


def _wide(head: bytes, charset: str | None) -> bool:
    """UTF-16/32 text, where NUL bytes are normal."""
    return head.startswith(_WIDE_BOMS) or bool(charset and _WIDE_CHARSET.match(charset))

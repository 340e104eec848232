"""Response bytes → str for the extractor, choosing the charset the way browsers do: byte-order mark,
then Content-Type charset, then <meta charset> / http-equiv in the first 4 KiB, else UTF-8.
"""

from __future__ import annotations

import codecs
import re

PRESCAN_BYTES = 4096

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Covers both <meta charset=x> and <meta http-equiv=content-type content="text/html; charset=x">.
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.IGNORECASE)
# WHATWG Encoding: these labels mean windows-1252 in a browser; UTF-7 is refused (script injection).
_WINDOWS_1252 = frozenset({"latin_1", "ascii", "iso8859_1", "cp1252"})
_REFUSED = frozenset({"utf_7"})
_WIDE = frozenset({"utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be"})


def decode_body(body: bytes, content_type: str | None) -> str:
    """bytes → str: a BOM wins (as in browsers), then the Content-Type charset, then <meta charset> or
    http-equiv in the first 4 KiB, else UTF-8. Unknown or bogus charsets fall back to UTF-8; undecodable
    bytes become U+FFFD; never raises."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(encoding, "replace")
    encoding = _charset_from_header(content_type) or _charset_from_meta(body[:PRESCAN_BYTES]) or "utf-8"
    try:
        return body.decode(encoding, "replace")
    except (LookupError, ValueError, TypeError):  # a text codec that still misbehaves: never fail the page
        return body.decode("utf-8", "replace")


def _charset_from_header(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = _HEADER_CHARSET.search(content_type)
    return _codec_name(match.group(1), allow_wide=True) if match else None


def _charset_from_meta(head: bytes) -> str | None:
    match = _META_CHARSET.search(head)
    if match is None:
        return None
    # A page that could be read as ASCII to find this tag is not UTF-16/32, whatever it says (WHATWG).
    return _codec_name(match.group(1).decode("ascii"), allow_wide=False)


def _codec_name(label: str, *, allow_wide: bool) -> str | None:
    """Python codec for a charset label, or None if it is unknown or not a text encoding."""
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True):  # base64, rot13, zlib ...: bytes-to-bytes codecs
        return None
    name = info.name.replace("-", "_")
    if name in _REFUSED:
        return None
    if name in _WIDE and not allow_wide:
        return "utf-8"
    return "cp1252" if name in _WINDOWS_1252 else info.name

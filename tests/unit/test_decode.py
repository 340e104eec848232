"""Response bytes → str: which charset wins, and that nothing ever raises."""

from __future__ import annotations

import codecs
import random

import pytest

from consumer.extract.decode import PRESCAN_BYTES, decode_body

CAFE_LATIN1 = "café".encode("latin-1")
CAFE_UTF8 = "café".encode()


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (CAFE_UTF8, "text/html; charset=utf-8", "café"),
        (CAFE_LATIN1, "text/html; charset=ISO-8859-1", "café"),
        (CAFE_LATIN1, 'text/html; charset="iso-8859-1"', "café"),
        (CAFE_LATIN1, "text/html;charset=latin1; foo=bar", "café"),
        ("привет".encode("cp1251"), "text/html; charset=windows-1251", "привет"),
        ("日本".encode("shift_jis"), "text/html; charset=Shift_JIS", "日本"),
        ("hé".encode("utf-16-le"), "text/html; charset=utf-16le", "hé"),
    ],
)
def test_charset_from_content_type_header_is_used(body: bytes, content_type: str, expected: str) -> None:
    assert decode_body(body, content_type) == expected


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (codecs.BOM_UTF8 + CAFE_UTF8, "text/html; charset=iso-8859-1", "café"),
        (codecs.BOM_UTF16_LE + "café".encode("utf-16-le"), "text/html; charset=utf-8", "café"),
        (codecs.BOM_UTF16_BE + "café".encode("utf-16-be"), None, "café"),
        (codecs.BOM_UTF8 + b"<p>x", None, "<p>x"),
    ],
)
def test_byte_order_mark_wins_over_header_and_is_removed(body: bytes, content_type: str | None, expected: str) -> None:
    assert decode_body(body, content_type) == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b'<meta charset="iso-8859-1">', "café"),
        (b"<META CHARSET=windows-1252>", "café"),
        (b'<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">', "café"),
        (b"<meta content='text/html;charset=latin1' http-equiv=content-type>", "café"),
    ],
)
def test_charset_from_meta_when_header_has_none(head: bytes, expected: str) -> None:
    body = b"<html><head>" + head + b"</head><body>" + CAFE_LATIN1
    assert decode_body(body, "text/html").endswith(expected)
    assert decode_body(body, None).endswith(expected)


def test_header_charset_wins_over_meta() -> None:
    body = b'<meta charset="iso-8859-1">' + CAFE_UTF8
    assert decode_body(body, "text/html; charset=utf-8").endswith("café")


def test_meta_after_the_prescan_window_is_ignored() -> None:
    body = b"<!--" + b"x" * PRESCAN_BYTES + b'--><meta charset="iso-8859-1">' + CAFE_UTF8
    assert decode_body(body, None).endswith("café")


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (CAFE_UTF8, "text/html; charset=no-such-charset", "café"),  # unknown label
        (CAFE_UTF8, "text/html; charset=base64", "café"),  # a codec, but not a text encoding
        (CAFE_UTF8, "text/html; charset=rot13", "café"),
        (b"+AGEAYgBj-", "text/html; charset=utf-7", "+AGEAYgBj-"),  # UTF-7 is refused, as in browsers
        (b'<meta charset="utf-16">' + CAFE_UTF8, None, '<meta charset="utf-16">café'),  # ASCII-readable page
        (b"<meta charset=bogus>" + CAFE_UTF8, None, "<meta charset=bogus>café"),
        (CAFE_UTF8, "", "café"),
        (CAFE_UTF8, None, "café"),
    ],
)
def test_unknown_or_bogus_charsets_fall_back_to_utf8(body: bytes, content_type: str | None, expected: str) -> None:
    assert decode_body(body, content_type) == expected


def test_latin1_label_decodes_as_windows_1252_like_a_browser() -> None:
    assert decode_body(b"\x80 \x93quoted\x94", "text/html; charset=iso-8859-1") == "€ “quoted”"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"caf\xe9 \xff\xfe", "text/html; charset=utf-8"),
        (b"caf\xe9", None),
        (b"\x82\xa0\x81", "text/html; charset=shift_jis"),
    ],
)
def test_undecodable_bytes_become_replacement_characters(body: bytes, content_type: str | None) -> None:
    text = decode_body(body, content_type)
    assert "\ufffd" in text


def test_random_bytes_and_headers_never_raise() -> None:
    rng = random.Random(7)
    labels = ["utf-8", "utf-16", "utf-32", "latin1", "shift_jis", "euc-jp", "big5", "gb18030", "koi8-r", ""]
    labels += ["cp1252", "idna", "punycode", "undefined", "hex", "uu", "zlib", "mbcs", "raw_unicode_escape"]
    for _ in range(2000):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        if rng.random() < 0.3:
            body = b'<meta charset="' + rng.choice(labels).encode() + b'">' + body
        content_type = f"text/html; charset={rng.choice(labels)}" if rng.random() < 0.5 else None
        assert isinstance(decode_body(body, content_type), str)

"""A fast HTML tokenizer (stdlib only, so it also runs on Pyodide): the page as a flat list of tokens."""

from __future__ import annotations

import re
from html import unescape

# A tag: `<name attrs>` or `</name ...>`; quoted attribute values may contain `>`.
# A construct never spans a `<` outside quotes: a candidate that cannot complete fails at the next `<`, which
# keeps the scan linear on hostile input such as "<a<a<a..." or "<!<!<!..." (html.parser goes quadratic).
# The attributes parse one way only (a character class or a whole quoted value), so their possessive
# quantifiers (Python 3.11+) change no match: they only spare the engine from trying to give characters back.
_MARKUP = re.compile(
    r"""<(?:
        (/?)([a-zA-Z][^\t\n\r\f />\x00<]*)((?:[^>"'<]++|"[^"]*+"|'[^']*+')*+)>  # start or end tag
      | !--.*?(?:--!?>|\Z)                                                # comment (unclosed: to the end)
      | ![^<>]*+>                                                         # doctype, CDATA-ish, bogus
      | \?[^<>]*+>                                                        # processing instruction
      | /[^a-zA-Z<>][^<>]*+>                                              # `</ ...>`: a bogus comment
      | />                                                               # `</>`: nothing at all
    )""",
    re.S | re.X,
)
_ATTR = re.compile(
    r"""((?<=[\s"'/])[^\s/>][^\s/=>]*)            # name (after whitespace, a quote or a slash)
        (\s*=+\s*("[^"]*"|'[^']*'|(?!["'])[^>\s]*))?  # optional `= value`
    """,
    re.X,
)
# `script` and `style` hold raw text, never markup: their content is cut out before the page is split (it is
# skipped anyway), so a "<div>" in a script string or an "a < b" never becomes a tag.
_RAW_ELEMENT = re.compile(
    r"""(<(script|style)(?=[\t\n\r\f />])(?:[^>"'<]++|"[^"]*+"|'[^']*+')*+>)  # the start tag
        [^<]*+(?:<(?!/\2(?=[\t\n\r\f />])[^<>]*>)[^<]*+)*+  # up to the first `<` that ends it (whole runs at a time)
        (</\2(?=[\t\n\r\f />])[^<>]*>|\Z)                         # its end tag, or the end of the page
    """,
    re.S | re.I | re.X,
)
# The start of a tag, comment or declaration that never closes.
_UNCLOSED = re.compile(r"<(?:[a-zA-Z/!?])")


def parse_attrs(text: str) -> list[tuple[str, str | None]]:
    attrs: list[tuple[str, str | None]] = []
    for name, assignment, value in _ATTR.findall(" " + text):
        if not assignment:
            attrs.append((name.lower(), None))
            continue
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        attrs.append((name.lower(), unescape(value) if "&" in value else value))
    return attrs


def split_markup(html: str) -> tuple[list[str], str]:
    """The page's tokens, `[text, slash, name, attributes] * n`, and the text after the last tag (unescaped).

    One compiled regex splits the page into text and every tag, comment and declaration in a single C call
    (where `html.parser` runs a Python loop of several regex matches per construct). `split_markup` returns
    `[text, slash, name, attributes] * n` and the text after the last tag: text as written (unescape it when it
    contains `&`), slash "/" for an end tag, the name lower-cased, the attribute text raw (`parse_attrs` splits
    it, only for the tags whose attributes matter). Comments and declarations are dropped and the text around
    them is one run, as in html.parser. `script` and `style` hold raw text up to their end tag. A `<` that starts
    no construct is text; a construct left open at the end of the page is dropped, as browsers do.
    """
    if "<s" in html or "<S" in html:
        html = _RAW_ELEMENT.sub(_empty_raw_element, html)
    # One C call splits the page: [text, slash, name, attributes, ..., text]; name is None for a comment.
    parts = _MARKUP.split(html)
    tail = parts.pop()
    names = _joined_names(parts)
    if names is None:  # comments or declarations: mostly a doctype, first, which is cheap to drop
        parts, tail = _without_leading_comments(parts, tail)
        names = _joined_names(parts)
        if names is None:
            parts, tail = _without_comments(parts, tail)
            names = "\x00".join(parts[2::4])
    if not names.islower() and names:  # lower-cased in one go (a name never holds NUL); mostly they are already
        parts[2::4] = names.lower().split("\x00")
    # A `<` that starts a construct never closed (an unclosed tag at the very end) is dropped.
    cut = _UNCLOSED.search(tail)
    if cut is not None:
        tail = tail[: cut.start()]
    return parts, unescape(tail) if "&" in tail else tail


def _joined_names(parts: list[str]) -> str | None:
    """The tag names joined by NUL, or None if there is a comment among the tokens (a name of None)."""
    try:
        return "\x00".join(parts[2::4])
    except TypeError:
        return None


def _without_leading_comments(parts: list[str], tail: str) -> tuple[list[str], str]:
    """Drop the comment and declaration tokens before the first tag, joining their text to its text."""
    lead = 0
    while lead < len(parts) and parts[lead + 2] is None:
        lead += 4
    text = "".join(parts[0:lead:4])
    del parts[:lead]
    if not parts:
        return parts, text + tail
    parts[0] = text + parts[0]
    return parts, tail


def _without_comments(parts: list[str], tail: str) -> tuple[list[str], str]:
    """Drop the comment and declaration tokens, joining the text before each to the text after it.

    Runs of tags between comments are copied as slices: the cost is in C, not per token.
    """
    names: list[str | None] = parts[2::4]  # type: ignore[assignment]  # re.split gives None for unmatched groups
    kept: list[str] = []
    pending = ""  # text before the comments since the last tag
    start = 0  # the first token group not copied yet
    comment = names.index(None)
    while True:
        if comment > start:
            kept.append(pending + parts[4 * start])
            kept += parts[4 * start + 1 : 4 * comment]
            pending = ""
        pending += parts[4 * comment]
        start = comment + 1
        try:
            comment = names.index(None, start)
        except ValueError:
            break
    if start < len(names):
        kept.append(pending + parts[4 * start])
        kept += parts[4 * start + 1 :]
        pending = ""
    return kept, pending + tail


def _empty_raw_element(match: re.Match[str]) -> str:
    return match.group(1) + match.group(3)

"""A fast HTML tokenizer with html.parser's event interface (stdlib only, so it also runs on Pyodide).

One compiled regex splits the page into text and every tag, comment and declaration in a single C call
(where `html.parser` runs a Python loop of several regex matches per construct), attributes are split by
one `findall`, and text is unescaped only when it contains `&`. The events are those of
`html.parser.HTMLParser(convert_charrefs=True)`: `handle_starttag(tag, attrs)`, `handle_startendtag`,
`handle_endtag(tag)` and `handle_data(text)` with each text run whole; names lower-cased, attribute values
unescaped, `None` for a value-less attribute. `script` and `style` hold raw text up to their end tag. A `<`
that starts no construct is text; a construct left open at the end of the page is dropped, as browsers do.
"""

from __future__ import annotations

import re
from html import unescape

# A tag: `<name attrs>` or `</name ...>`; quoted attribute values may contain `>`.
# A construct never spans a `<` outside quotes: a candidate that cannot complete fails at the next `<`, which
# keeps the scan linear on hostile input such as "<a<a<a..." or "<!<!<!..." (html.parser goes quadratic).
_MARKUP = re.compile(
    r"""<(?:
        (/?)([a-zA-Z][^\t\n\r\f />\x00<]*)((?:[^>"'<]|"[^"]*"|'[^']*')*)>  # start or end tag
      | !--.*?(?:--!?>|\Z)                                                # comment (unclosed: to the end)
      | ![^<>]*>                                                         # doctype, CDATA-ish, bogus
      | \?[^<>]*>                                                        # processing instruction
      | /[^a-zA-Z<>][^<>]*>                                              # `</ ...>`: a bogus comment
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
    r"""(<(script|style)(?=[\t\n\r\f />])(?:[^>"'<]|"[^"]*"|'[^']*')*>)  # the start tag
        .*?
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


class Tokenizer:
    """Mix-in: `tokenize(html)` calls the `handle_*` methods of the class it is mixed into."""

    __slots__ = ()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None: ...

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None: ...

    def handle_endtag(self, tag: str) -> None: ...

    def handle_data(self, data: str) -> None: ...

    def tokenize(self, html: str) -> None:
        if "<s" in html or "<S" in html:
            html = _RAW_ELEMENT.sub(_empty_raw_element, html)
        # One C call splits the page: [text, slash, name, attributes, text, slash, name, attributes, ..., text];
        # name is None for a comment or declaration.
        parts = _MARKUP.split(html)
        data = self.handle_data
        start_tag, end_tag, empty_tag = self.handle_starttag, self.handle_endtag, self.handle_startendtag
        pending = ""  # text runs separated only by comments are one run, as in html.parser
        last = len(parts) - 1
        for i in range(0, last, 4):
            text = parts[i]
            name = parts[i + 2]
            if name is None:
                pending += text
                continue
            text = pending + text if pending else text
            pending = ""
            if text:
                data(unescape(text) if "&" in text else text)
            tag = name.lower()
            if parts[i + 1]:
                end_tag(tag)
                continue
            raw = parts[i + 3]
            attrs = parse_attrs(raw) if raw and not raw.isspace() else []
            if raw.endswith("/"):
                empty_tag(tag, attrs)
            else:
                start_tag(tag, attrs)
        text = pending + parts[last]
        if text:
            # A `<` that starts a construct never closed (an unclosed tag at the very end) is dropped.
            cut = _UNCLOSED.search(text)
            if cut is not None:
                text = text[: cut.start()]
            if text:
                data(unescape(text) if "&" in text else text)


def _empty_raw_element(match: re.Match[str]) -> str:
    return match.group(1) + match.group(3)

"""Markdown syntax for the extractor: escaping, link destinations, code fences, line breaks, tables;
escaping is light on purpose: only what would otherwise change how the text renders.
"""

from __future__ import annotations

import re
from html.entities import html5

# `_` only at a word edge (intraword `_` is never emphasis in GFM); `]` only where it could close a link;
# `<` only where it could open an HTML tag; `&` only where it would read as an entity.
_INLINE_ESCAPE = re.compile(
    r"[*`]|\\(?=[!-/:-@\[-`{-~])|(?<![^\W_])_|_(?![^\W_])|\](?=[(\[:])|<(?=[A-Za-z/!?])|&(?=(#?[0-9A-Za-z]+;))"
)
LINE_START_CHARS = frozenset("#>-+=|~0123456789")
_LINE_START = re.compile(r"^(?:#{1,6}(?=\s|$)|>|\+(?=\s|$)|-(?=\s|-*\s*$)|=+\s*$|\||~~~|(\d{1,9})(?=[.)](?:\s|$)))")
_BACKTICKS = re.compile(r"`+")
_MAX_TABLE_COLUMNS = 64


def escape_inline(text: str) -> str:
    """Escape a run of text so markdown renders it literally (worth calling only if it has one of \\*_`]<&)."""
    return _INLINE_ESCAPE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    entity = match.group(1)
    if entity is not None and not entity.startswith("#") and entity not in html5:
        return "&"  # "&bogus;" renders as written
    return "\\" + match.group(0)


def escape_line_start(line: str) -> str:
    """Escape a line start that would read as a heading, quote, list item, rule or table row."""
    match = _LINE_START.match(line)
    if match is None:
        return line
    if match.group(1) is not None:  # "1. " → "1\. "
        return f"{match.group(1)}\\{line[match.end(1) :]}"
    return "\\" + line


def link_destination(url: str) -> str:
    """A URL as a markdown link destination; angle brackets when parentheses or spaces would break it."""
    if " " in url or "(" in url or ")" in url:
        url = url.replace("<", "%3C").replace(">", "%3E")
        return f"<{url}>"
    return url


def code_span(content: str) -> tuple[str, str]:
    """Opening and closing delimiters for an inline code span holding `content`."""
    longest = max((len(run) for run in _BACKTICKS.findall(content)), default=0)
    fence = "`" * (longest + 1)
    return (f"{fence} ", f" {fence}") if longest else ("`", "`")


def code_block(content: str, language: str) -> str:
    """A fenced code block; the fence is longer than any backtick run inside."""
    longest = max((len(run) for run in _BACKTICKS.findall(content)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{content}\n{fence}"


def split_lines(md: str, tx: str) -> tuple[str, str]:
    """Finish a block that holds <br> line breaks ("\\n"): hard breaks in markdown, newlines in text.

    Two breaks in a row become a paragraph break, as they look in a browser.
    """
    md_lines = [line.strip(" ") for line in md.strip(" \n").split("\n")]
    out: list[str] = []
    for line in md_lines:
        if not line:
            if out and out[-1]:
                out.append("")
            continue
        if out and out[-1]:
            out[-1] += "\\"
        out.append(escape_line_start(line) if line[0] in LINE_START_CHARS else line)
    tx_lines = [line.strip(" ") for line in tx.strip(" \n").split("\n")]
    return "\n".join(out), "\n".join(line for line in tx_lines if line)


def table(rows: list[list[str]]) -> str:
    """A GFM table; the first row is the header (GFM requires one), ragged rows are padded."""
    width = min(max(len(row) for row in rows), _MAX_TABLE_COLUMNS)
    lines = []
    for i, row in enumerate(rows):
        cells = row[:width] + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            lines.append("|" + " --- |" * width)
    return "\n".join(lines)


def table_cell(md: str) -> str:
    """Cell content on one line with its pipes escaped."""
    if "\n" in md:
        md = md.replace("\\\n", " ").replace("\n", " ")
    return md.replace("|", "\\|")

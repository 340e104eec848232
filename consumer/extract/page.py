"""Page extraction: one HTML page → metadata, markdown, plain text, links and a content hash.
Pure and stdlib-only (it also runs on Pyodide), in a single pass over the tokenizer's events (`tags`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from consumer.extract.blocks import ARTICLE, B_MD, B_MD_SEP, B_TX, B_TX_SEP, BOILERPLATE, MAIN
from consumer.extract.decode import decode_body
from consumer.extract.tags import PageParser

__all__ = ["Extracted", "decode_body", "extract", "normalize_language"]

Ranges = list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Extracted:
    title: str | None
    description: str | None  # <meta name=description> or og:description
    language: str | None  # <html lang>, else <meta http-equiv=content-language>; like "en" / "en-US"
    canonical: str | None  # <link rel=canonical>, resolved + normalised, or None
    markdown: str | None  # None unless want_markdown
    text: str | None  # None unless want_text
    links: list[str]  # every <a href>, resolved, de-duplicated, document order, at most max_links
    content_hash: str  # "sha256:" + hexdigest of the extracted plain text (computed even if want_text is False)


def extract(
    html: str,
    *,
    base_url: str,
    want_markdown: bool = True,
    want_text: bool = False,
    only_main_content: bool = True,
    max_links: int = 2000,
) -> Extracted:
    """Extract one page. Never raises on any `html`: a hostile page yields a poor result, not an error."""
    if "\x00" in html:  # browsers drop NUL from text
        html = html.replace("\x00", "")
    if "\r" in html:  # newline normalisation, as the HTML tokenizer does before anything else
        html = html.replace("\r\n", "\n").replace("\r", "\n")
    parser = PageParser(base_url, want_md=want_markdown, max_links=max_links)
    parser.run(html)
    blocks = parser.blocks
    md_blocks, md_seps, tx_blocks, tx_seps = blocks[B_MD::4], blocks[B_MD_SEP::4], blocks[B_TX::4], blocks[B_TX_SEP::4]
    ranges = _content_ranges(parser, md_blocks, tx_blocks) if only_main_content else [(0, len(md_blocks))]
    text = _join(tx_blocks, tx_seps, ranges)
    meta = parser.meta
    title = "".join(parser.title_parts) if parser.title_parts else None
    return Extracted(
        title=_clean(title) or _clean(meta.get("og:title")),
        description=_clean(meta.get("description")) or _clean(meta.get("og:description")),
        language=normalize_language(parser.lang) or normalize_language(meta.get("content-language")),
        canonical=parser.links.resolve(parser.canonical_href) if parser.canonical_href else None,
        markdown=_join(md_blocks, md_seps, ranges) if want_markdown else None,
        text=text if want_text else None,
        links=parser.links.links,
        content_hash="sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
    )


def normalize_language(value: str | None) -> str | None:
    """A language tag in its usual case ("en", "en-US", "zh-Hant-TW"), or None if it is not one."""
    if not value:
        return None
    parts = value.split(",")[0].strip().replace("_", "-").split("-")
    primary = parts[0]
    if not (2 <= len(primary) <= 8 and primary.isascii() and primary.isalpha()):
        return None
    tag = [primary.lower()]
    for part in parts[1:4]:
        if not (1 <= len(part) <= 8 and part.isascii() and part.isalnum()):
            break
        if len(part) == 2 and part.isalpha():
            tag.append(part.upper())  # region
        elif len(part) == 4 and part.isalpha():
            tag.append(part.title())  # script
        else:
            tag.append(part.lower())
    return "-".join(tag)


def _content_ranges(parser: PageParser, md: list[str], tx: list[str]) -> Ranges:
    """<main> (or role=main), else the only <article>, else the page minus nav/header/footer/aside/form.

    A region that turns out empty (an app shell's placeholder <main>) falls through to the next choice.
    """
    end = len(md)
    main = [(start, end if stop < 0 else stop) for start, stop in parser.ranges[MAIN]]
    if main and _has_content(md, tx, main):
        return main
    if parser.articles == 1:
        article = [(start, end if stop < 0 else stop) for start, stop in parser.ranges[ARTICLE]]
        if _has_content(md, tx, article):
            return article
    kept: Ranges = []
    position = 0
    for start, stop in parser.ranges[BOILERPLATE]:
        if start > position:
            kept.append((position, start))
        position = end if stop < 0 else max(position, stop)
    if position < end:
        kept.append((position, end))
    return kept


def _has_content(md: list[str], tx: list[str], ranges: Ranges) -> bool:
    return any(any(md[start:stop]) or any(tx[start:stop]) for start, stop in ranges)


def _join(blocks: list[str], seps: list[str], ranges: Ranges) -> str:
    """Join the blocks in `ranges`; an empty block (an image in the text) passes on its separator.

    Runs of non-empty blocks, the bulk of a page, are interleaved with their separators by slicing.
    """
    parts: list[str] = []
    sep = ""  # the strongest separator since the last block written
    for start, stop in ranges:
        while start < stop:
            try:
                empty = blocks.index("", start, stop)
            except ValueError:
                empty = stop
            if start < empty:
                if parts:
                    parts.append(seps[start] if len(seps[start]) > len(sep) else sep)
                parts.append(blocks[start])
                run = [""] * (2 * (empty - start - 1))
                run[::2] = seps[start + 1 : empty]
                run[1::2] = blocks[start + 1 : empty]
                parts += run
                sep = ""
            if empty < stop and len(seps[empty]) > len(sep):
                sep = seps[empty]
            start = empty + 1
    return "".join(parts)


def _clean(value: str | None) -> str | None:
    return " ".join(value.split()) or None if value else None

"""`PageParser`, the extractor's parser: per-tag handlers (what each start tag opens, which end action it pushes)
over `ElementLoop`."""

from __future__ import annotations

import re

from consumer.extract.blocks import ARTICLE, BLOCK, BOILERPLATE, F_OPEN, MAIN, PARA
from consumer.extract.elements import HEAD, NORMAL, PRE, SKIPPED, TITLE, ElementLoop, attr, language
from consumer.extract.markdown import link_destination
from consumer.extract.tokenizer import parse_attrs

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_NOT_KEPT_SCHEMES = frozenset({"http", "https", "javascript", "vbscript", "data", "file"})
_LIST_TAGS = frozenset({"ul", "ol", "menu"})
_ITEM = frozenset({"li"})
_DEFINITION = frozenset({"dt", "dd"})
_DEFINITION_BARRIER = frozenset({"dl", "table"})
_ROW = frozenset({"tr"})
_CELL = frozenset({"td", "th"})
_TABLE = frozenset({"table"})
_TABLE_ROW = frozenset({"table", "tr"})
_HEADINGS = {f"h{n}": "#" * n + " " for n in range(1, 7)}
_BLOCKS = ("div", "section", "figcaption", "summary", "hgroup", "fieldset", "legend", "search", "dialog")
_PARA_BLOCKS = frozenset({"p", "address", "dl", "figure", "details", "center"})
_REGIONS = {"main": MAIN, "article": ARTICLE, "nav": BOILERPLATE, "header": BOILERPLATE}
_REGIONS |= {"footer": BOILERPLATE, "aside": BOILERPLATE, "form": BOILERPLATE}
_FRAMES = {"b": "**", "strong": "**", "i": "*", "em": "*", "cite": "*", "dfn": "*", "var": "*"}
_FRAMES |= {"s": "~~", "del": "~~", "strike": "~~", "code": "`", "kbd": "`", "samp": "`", "tt": "`"}
_LAYOUT_ROLES = frozenset({"presentation", "none"})


class PageParser(ElementLoop):
    """One page's parser: `run(html)`, then read its blocks, links and metadata."""

    # The frequent handlers (p, li, strong, a ...) inline their checks: each runs hundreds of times a page.
    __slots__ = ("base_seen", "body_seen", "canonical_href", "html_seen", "lang", "leave", "meta")

    def __init__(self, base_url: str, *, want_md: bool, max_links: int) -> None:
        super().__init__(base_url, want_md=want_md, max_links=max_links)
        self.leave = (self.leave_main, self.leave_article, self.leave_boilerplate)
        self.body_seen = False
        self.html_seen = False
        self.base_seen = False
        self.lang: str | None = None
        self.canonical_href: str | None = None
        self.meta: dict[str, str] = {}  # description, og:description, og:title, content-language

    # ---- blocks ---------------------------------------------------------------------------------
    def on_block(self, tag: str, raw: str) -> None:
        stack = self.stack
        if stack and stack[-1] == "p":  # any block start closes an open paragraph
            self.unwind(len(stack) - 1)
        if self.md or self.tx:
            self.flush()
        if raw and _is_main(raw):
            self.enter_region(MAIN)
            stack.append(tag)
            self.actions.append(self.leave_main)
            return
        stack.append(tag)
        if tag in _PARA_BLOCKS:
            self.boundary(PARA)
            self.actions.append(self.end_para)
        else:
            self.boundary(BLOCK)
            self.actions.append(self.end_block)

    def end_para(self) -> None:
        self.end_block_as(PARA)

    def end_block(self) -> None:
        self.end_block_as(BLOCK)

    def on_definition(self, tag: str, raw: str) -> None:
        self.close_open(_DEFINITION, _DEFINITION_BARRIER)
        self.on_block(tag, raw)

    def on_region(self, tag: str, raw: str) -> None:
        if self.stack and self.stack[-1] == "p":
            self.unwind(len(self.stack) - 1)
        kind = MAIN if raw and _is_main(raw) else _REGIONS[tag]
        self.enter_region(kind)
        self.stack.append(tag)
        self.actions.append(self.leave[kind])

    def on_heading(self, tag: str, raw: str) -> None:
        stack = self.stack
        if stack and (stack[-1] == "p" or stack[-1] in _HEADINGS):
            self.unwind(len(stack) - 1)
        self.end_block_as(PARA)
        self.heading = _HEADINGS[tag]
        stack.append(tag)
        self.actions.append(self.end_heading)

    def end_heading(self) -> None:
        if self.md or self.tx:
            self.flush()
        self.heading = ""
        if not self.item_start:  # boundary(PARA): nothing is stronger
            self.next_sep = PARA

    def on_list(self, tag: str, raw: str) -> None:
        if self.stack and self.stack[-1] == "p":
            self.unwind(len(self.stack) - 1)
        number = _integer(attr(parse_attrs(raw), "start")) if tag == "ol" and raw else None
        self.start_list(tag == "ol", 1 if number is None else number)
        self.stack.append(tag)
        self.actions.append(self.end_list)

    def on_item(self, tag: str, raw: str) -> None:
        if "li" in self.stack:
            self.close_open(_ITEM, _LIST_TAGS)
        value = _integer(attr(parse_attrs(raw), "value")) if raw and self.lists and self.lists[-1][0] else None
        self.start_item(value)
        self.stack.append(tag)
        self.actions.append(self.end_item)

    def on_quote(self, tag: str, raw: str) -> None:
        if self.stack and self.stack[-1] == "p":
            self.unwind(len(self.stack) - 1)
        self.start_quote()
        self.stack.append(tag)
        self.actions.append(self.end_quote)

    def on_pre(self, tag: str, raw: str) -> None:
        if self.stack and self.stack[-1] == "p":
            self.unwind(len(self.stack) - 1)
        if self.md or self.tx:
            self.flush()
        self.boundary(PARA)
        self.mode = PRE
        self.pre_parts.clear()
        self.pre_inner.clear()
        self.pre_lang = language(parse_attrs(raw)) if raw else ""
        self.stack.append(tag)
        self.actions.append(self.end_pre)

    def on_rule(self, tag: str, raw: str) -> None:
        if self.stack and self.stack[-1] == "p":
            self.unwind(len(self.stack) - 1)
        if self.md or self.tx:
            self.flush()
        self.boundary(PARA)
        self.emit_block("---", "")  # also when only text is wanted: a rule is content (see on_image)
        self.boundary(PARA)

    def on_break(self, tag: str, raw: str) -> None:
        self.line_break()

    # ---- tables ---------------------------------------------------------------------------------
    def on_table(self, tag: str, raw: str) -> None:
        if self.stack and self.stack[-1] == "p":
            self.unwind(len(self.stack) - 1)
        role = (attr(parse_attrs(raw), "role") or "").strip().lower() if raw else ""
        self.start_table(layout=role in _LAYOUT_ROLES)
        self.stack.append(tag)
        self.actions.append(self.end_table)

    def on_row(self, tag: str, raw: str) -> None:
        if not self.tables:  # a stray row reads as a block
            self.on_block(tag, raw)
            return
        self.close_open(_ROW, _TABLE)
        self.start_row()
        self.stack.append(tag)
        self.actions.append(self.end_row)

    def on_cell(self, tag: str, raw: str) -> None:
        if not self.tables:
            self.on_block(tag, raw)
            return
        self.close_open(_CELL, _TABLE_ROW)
        self.start_cell()
        self.stack.append(tag)
        self.actions.append(self.end_cell)

    def on_caption(self, tag: str, raw: str) -> None:
        if not self.tables:
            self.on_block(tag, raw)
            return
        self.start_caption()
        self.stack.append(tag)
        self.actions.append(self.end_caption)

    # ---- inline ---------------------------------------------------------------------------------
    # Inline elements are pushed even when they write nothing (text only, markup inside code, <b> in <b>):
    # their end tags must pair the same way in every mode, or the text would depend on the formats.
    def on_frame(self, tag: str, raw: str) -> None:
        self.stack.append(tag)
        kind = _FRAMES[tag]
        if self.want_md and not self.code:
            for frame in self.frames:
                if frame[F_OPEN] == kind:  # <b> in <strong>: one pair of delimiters
                    break
            else:
                if kind == "`":
                    self.code += 1
                self.frames.append([kind, kind, -1])
                self.actions.append(self.pop_frame)
                return
        self.actions.append(None)

    def on_link(self, tag: str, raw: str) -> None:
        if "a" in self.stack:  # links do not nest: a new <a> closes the open one
            self.pop_to("a")
        href = attr(parse_attrs(raw), "href") if raw else None
        if href is None:
            return
        url = self.links.collect(href)
        target = url if url is not None else other_destination(href)
        self.stack.append(tag)
        if not self.want_md or self.code or target is None:
            self.actions.append(None)
            return
        self.frames.append(["[", f"]({link_destination(target)})", -1])
        self.actions.append(self.pop_frame)

    def on_image(self, tag: str, raw: str) -> None:
        # Written even when only text is wanted: an image-only block must exist in both modes, or the
        # separators around it (and so the text and its hash) would depend on the requested formats.
        attrs = parse_attrs(raw)
        src = attr(attrs, "src")
        if not src or src.startswith("data:"):  # lazy-loading pages keep the real image in data-src
            src = attr(attrs, "data-src") or src
        url = self.links.resolve(src) if src else None
        if url is None:
            return
        alt = " ".join((attr(attrs, "alt") or "").split())
        alt = alt.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
        self.inline_markdown(f"![{alt}]({link_destination(url)})")

    # ---- document and metadata ------------------------------------------------------------------
    def on_skip(self, tag: str, raw: str) -> None:
        if raw[-1:] != "/":  # a self-closed one (`<svg/>`) has no content to skip
            self.start_skip(tag)

    def on_html(self, tag: str, raw: str) -> None:
        if not self.html_seen:
            self.html_seen = True
            self.lang = attr(parse_attrs(raw), "lang")

    def on_head(self, tag: str, raw: str) -> None:
        if self.mode == NORMAL and not self.body_seen and not self.blocks and not self.tx:
            self.mode = HEAD

    def on_body(self, tag: str, raw: str) -> None:
        self.body_seen = True
        if self.mode == HEAD:
            self.mode = NORMAL

    def on_title(self, tag: str, raw: str) -> None:
        if raw[-1:] == "/":
            return
        if self.title_parts is not None:  # only the first <title> names the page; others are hidden
            self.start_skip(tag)
            return
        self.title_parts = []
        self.title_prev = self.mode
        self.mode = TITLE

    def on_meta(self, tag: str, raw: str) -> None:
        values = dict(parse_attrs(raw))
        content = values.get("content")
        if not content:
            return
        key = (values.get("name") or values.get("property") or "").strip().lower()
        if key in ("description", "og:description", "og:title"):
            self.meta.setdefault(key, content)
        equiv = values.get("http-equiv")
        if equiv and equiv.strip().lower() == "content-language":
            self.meta.setdefault("content-language", content)

    def on_link_tag(self, tag: str, raw: str) -> None:
        attrs = parse_attrs(raw)
        if self.canonical_href is None and "canonical" in (attr(attrs, "rel") or "").lower().split():
            self.canonical_href = attr(attrs, "href")

    def on_base(self, tag: str, raw: str) -> None:
        href = attr(parse_attrs(raw), "href")
        if href is not None and not self.base_seen:  # only the first <base href> counts
            self.base_seen = True
            self.links.set_base(href)


def _is_main(raw: str) -> bool:
    if "role" not in raw.lower():  # parse only what may hold one (names are lower-cased when parsed)
        return False
    for key, value in parse_attrs(raw):
        if key == "role" and value is not None:
            return value.strip().lower() == "main"
    return False


def _integer(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return min(max(int(value.strip()), 0), 10**9)
    except ValueError:
        return None


def other_destination(href: str) -> str | None:
    """Link target kept as written (mailto:, tel:, ...), or None for javascript:, fragments and junk."""
    href = href.strip("\x00\t\n\f\r ").replace("\t", "").replace("\n", "").replace("\r", "")
    match = _SCHEME.match(href)
    if match is None or match.group(1).lower() in _NOT_KEPT_SCHEMES or len(href) > 2083:
        return None
    return href.replace(" ", "%20")


_HANDLERS = {tag: PageParser.on_block for tag in _BLOCKS + tuple(_PARA_BLOCKS)}
_HANDLERS |= {tag: PageParser.on_region for tag in _REGIONS}
_HANDLERS |= {tag: PageParser.on_heading for tag in _HEADINGS}
_HANDLERS |= {tag: PageParser.on_frame for tag in _FRAMES}
_HANDLERS |= {tag: PageParser.on_skip for tag in SKIPPED}
_HANDLERS |= {tag: PageParser.on_list for tag in _LIST_TAGS}
_HANDLERS |= {"dt": PageParser.on_definition, "dd": PageParser.on_definition, "li": PageParser.on_item}
_HANDLERS |= {"blockquote": PageParser.on_quote, "pre": PageParser.on_pre, "hr": PageParser.on_rule}
_HANDLERS |= {"br": PageParser.on_break, "a": PageParser.on_link, "img": PageParser.on_image}
_HANDLERS |= {"table": PageParser.on_table, "tr": PageParser.on_row, "caption": PageParser.on_caption}
_HANDLERS |= {"td": PageParser.on_cell, "th": PageParser.on_cell}
_HANDLERS |= {"html": PageParser.on_html, "head": PageParser.on_head, "body": PageParser.on_body}
_HANDLERS |= {"title": PageParser.on_title, "meta": PageParser.on_meta, "link": PageParser.on_link_tag}
_HANDLERS |= {"base": PageParser.on_base}
PageParser.handlers = _HANDLERS

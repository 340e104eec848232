"""The element loop behind `extract`: tokens in, a bounded open-element stack (no recursion), skipped subtrees,
head/title/pre modes. The per-tag handlers (`PageParser`) are in `tags`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from html import unescape
from typing import Any, ClassVar

from consumer.extract.blocks import PARA
from consumer.extract.links import LinkCollector
from consumer.extract.markdown import code_block, escape_inline
from consumer.extract.tables import TableWriter
from consumer.extract.tokenizer import parse_attrs, split_markup

MAX_DEPTH = 512
NORMAL, HEAD, TITLE, PRE, SKIP = 0, 1, 2, 3, 4  # where text goes: content, nowhere, title, a <pre>, nowhere
Attrs = list[tuple[str, str | None]]

_WS = " \t\n\r\f"  # HTML's whitespace (not Python's: a no-break space is text)
_WS_RUN = re.compile(r"[ \t\n\r\f]+")
_HARD_SKIP = frozenset({"script", "style", "noscript", "template", "iframe", "textarea", "noembed", "noframes"})
# Browsers end these at an end tag of an enclosing element, so an unclosed one must not eat the page.
_SOFT_SKIP = frozenset(
    {"svg", "math", "object", "canvas", "select", "option", "optgroup", "button", "datalist", "title"}
)
SKIPPED = _HARD_SKIP | _SOFT_SKIP
_HEAD_TAGS = frozenset({"title", "meta", "link", "base", "script", "style", "noscript", "template"})
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})
_NO_PUSH = VOID | SKIPPED | {"html", "head", "body", "title"}  # handlers that never push


class ElementLoop(TableWriter):
    """Feed it one page with `run`; read the writer's blocks and the metadata attributes afterwards."""

    __slots__ = (
        "actions",
        "links",
        "mode",
        "pre_inner",
        "pre_lang",
        "pre_parts",
        "skip_depth",
        "skip_inner",
        "skip_prev",
        "skip_tag",
        "stack",
        "title_parts",
        "title_prev",
    )
    # tag -> handler(parser, tag, raw attribute text); filled in by the subclass that defines the handlers
    handlers: ClassVar[Mapping[str, Callable[[Any, str, str], None]]] = {}

    def __init__(self, base_url: str, *, want_md: bool, max_links: int) -> None:
        self.init_writer(want_md)
        self.links = LinkCollector(base_url, max_links)
        self.stack: list[str] = []
        self.actions: list[Callable[[], None] | None] = []  # end action of each open element
        self.mode = NORMAL
        self.title_prev = NORMAL
        self.skip_prev = NORMAL
        self.skip_depth = 0
        self.skip_tag = ""
        self.skip_inner: list[str] = []  # elements opened inside the skipped subtree
        self.pre_inner: list[str] = []  # elements opened inside <pre>
        self.pre_parts: list[str] = []
        self.pre_lang = ""
        self.title_parts: list[str] | None = None

    def run(self, html: str) -> None:
        tokens, tail = split_markup(html)
        stack, actions, handlers = self.stack, self.actions, self.handlers
        data = self.handle_data if self.want_md else self.handle_text
        group = iter(tokens)
        # The hot loop: the usual start tag goes straight to its handler and the usual end tag (closing the
        # innermost element, outside any special mode) is popped here; everything else takes the general path.
        # (`<x/>` is `<x>` in HTML except for the skipped elements, whose handlers check for it.)
        for text, slash, tag, raw in zip(group, group, group, group, strict=False):
            if text:
                data(unescape(text) if "&" in text else text)
            if slash:
                if stack and stack[-1] == tag and not self.mode:
                    stack.pop()
                    action = actions.pop()
                    if action is not None:
                        action()
                else:
                    self.handle_endtag(tag)
            elif self.mode or len(stack) >= MAX_DEPTH:
                self.handle_starttag(tag, raw)
            else:
                handler = handlers.get(tag)
                if handler is not None:
                    handler(self, tag, raw)
        if tail:
            data(tail)
        self._end_of_input()

    def _end_of_input(self) -> None:
        """After the last token: leave an unclosed skipped subtree or title, close every element, write the rest."""
        if self.mode == SKIP:
            self.mode = self.skip_prev
        if self.mode == TITLE:
            self.mode = self.title_prev
        self.unwind(0)
        if self.md or self.tx:
            self.flush()

    # ---- events (the general path) --------------------------------------------------------------
    def handle_starttag(self, tag: str, raw: str) -> None:
        if raw[-1:] == "/":  # `<div/>` opens a div in HTML; a self-closed skipped element or title has no content
            if self.mode == SKIP or tag in SKIPPED:
                return
        if self.mode and self._special_start(tag, raw):
            return
        handler = self.handlers.get(tag)
        if handler is None:
            return
        if len(self.stack) < MAX_DEPTH or tag in _NO_PUSH:
            handler(self, tag, raw)
        elif tag == "a":
            self.links.collect(attr(parse_attrs(raw), "href"))

    def handle_endtag(self, tag: str) -> None:
        if self.mode and self._special_end(tag):
            return
        stack = self.stack
        if stack and stack[-1] == tag:
            stack.pop()
            action = self.actions.pop()
            if action is not None:
                action()
        elif tag in stack:
            self.pop_to(tag)
        elif tag == "br":  # browsers read </br> as <br>
            self.line_break()

    def handle_data(self, data: str) -> None:
        """A text run, written to both the markdown and the text buffers."""
        if self.mode and self._special_data(data):
            return
        s = data.strip(_WS)
        if not s:
            if data:
                self.space = True
            return
        if "\n" in s or "  " in s or "\t" in s or "\f" in s:
            s = _WS_RUN.sub(" ", s)
        m = s
        if not self.code and ("*" in s or "_" in s or "`" in s or "\\" in s or "]" in s or "<" in s or "&" in s):
            m = escape_inline(s)
        if self.has_text and (self.space or data[0] in _WS):
            self.md.append(" ")  # before the delimiters opened next: "a **b**", not "a** b**"
            s = " " + s
        if self.unopened < len(self.frames):
            self.open_frames()
        self.tx.append(s)
        self.md.append(m)
        self.has_text = True
        self.space = data[-1] in _WS

    def handle_text(self, data: str) -> None:
        """A text run when markdown is not wanted: the same text, with no markdown to write (and no frames)."""
        if self.mode and self._special_data(data):
            return
        s = data.strip(_WS)
        if not s:
            if data:
                self.space = True
            return
        if "\n" in s or "  " in s or "\t" in s or "\f" in s:
            s = _WS_RUN.sub(" ", s)
        self.tx.append(" " + s if self.has_text and (self.space or data[0] in _WS) else s)
        self.has_text = True
        self.space = data[-1] in _WS

    # ---- stack ----------------------------------------------------------------------------------
    def pop_to(self, tag: str) -> None:
        stack = self.stack
        for depth in range(len(stack) - 1, -1, -1):
            if stack[depth] == tag:
                self.unwind(depth)
                return

    def unwind(self, depth: int) -> None:
        stack, actions = self.stack, self.actions
        while len(stack) > depth:
            stack.pop()
            action = actions.pop()
            if action is not None:
                action()

    def close_open(self, targets: frozenset[str], barriers: frozenset[str]) -> None:
        """Close an element implied closed by a new one (li by li, td by td), not crossing barriers."""
        stack = self.stack
        for depth in range(len(stack) - 1, -1, -1):
            tag = stack[depth]
            if tag in targets:
                self.unwind(depth)
                return
            if tag in barriers:
                return

    # ---- modes: skipped subtrees, head, title, pre ----------------------------------------------
    def start_skip(self, tag: str) -> None:
        self.skip_prev, self.mode = self.mode, SKIP
        self.skip_tag = tag
        self.skip_depth = 1
        self.skip_inner.clear()

    def _special_start(self, tag: str, raw: str) -> bool:
        mode = self.mode
        if mode == SKIP:
            if tag == self.skip_tag:
                self.skip_depth += 1
            elif tag not in VOID and len(self.skip_inner) < MAX_DEPTH:
                self.skip_inner.append(tag)
            if tag == "a" and self.skip_tag == "noscript":  # a crawler should see the no-JS navigation
                self.links.collect(attr(parse_attrs(raw), "href"))
            return True
        if mode == TITLE:  # a tag inside <title>: the title was never closed
            self.mode = mode = self.title_prev
        if mode == HEAD:
            if tag not in _HEAD_TAGS:
                self.mode = NORMAL
            return False
        if mode == PRE:
            self._pre_start(tag, raw)
            return True
        return False

    def _special_end(self, tag: str) -> bool:
        mode = self.mode
        if mode == SKIP:
            return self._skip_end(tag)
        if mode == TITLE:
            if tag == "title":
                self.mode = self.title_prev
            return True
        if mode == HEAD:
            if tag == "head":
                self.mode = NORMAL
                return True
            return False
        return self._pre_end(tag) if mode == PRE else False

    def _skip_end(self, tag: str) -> bool:
        """An end tag inside a skipped subtree; False when it closes an enclosing element too."""
        inner = self.skip_inner
        if tag == self.skip_tag and tag not in inner:
            self.skip_depth -= 1
            if not self.skip_depth:
                self.mode = self.skip_prev
            return True
        if tag in inner:
            del inner[len(inner) - 1 - inner[::-1].index(tag) :]
            return True
        if self.skip_tag in _SOFT_SKIP and tag in self.stack:
            self.mode = self.skip_prev
            return False
        return True

    def _special_data(self, data: str) -> bool:
        """Text in a special mode; False when it is content after all."""
        mode = self.mode
        if mode == PRE:
            self.pre_parts.append(data)
        elif mode == TITLE:
            if self.title_parts is not None:
                self.title_parts.append(data)
        elif mode == HEAD and data.strip(_WS):  # text in <head> starts the body, as in browsers
            self.mode = NORMAL
            return False
        return True

    def _pre_start(self, tag: str, raw: str) -> None:
        if tag == "br":
            self.pre_parts.append("\n")
        elif tag in SKIPPED:
            self.start_skip(tag)
        elif tag not in VOID and len(self.pre_inner) < MAX_DEPTH:
            self.pre_inner.append(tag)
            if tag == "code" and not self.pre_lang:
                self.pre_lang = language(parse_attrs(raw))
        if tag == "a":
            self.links.collect(attr(parse_attrs(raw), "href"))

    def _pre_end(self, tag: str) -> bool:
        inner = self.pre_inner
        if tag in inner:
            del inner[len(inner) - 1 - inner[::-1].index(tag) :]
            return True
        if tag == "br":
            self.pre_parts.append("\n")
            return True
        return False

    def end_pre(self) -> None:
        self.mode = NORMAL
        content = "".join(self.pre_parts)
        self.pre_parts.clear()
        lines = [line.rstrip() for line in content.split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        start = 0
        while start < len(lines) and not lines[start]:  # blank lines around code carry nothing
            start += 1
        if start < len(lines):
            text = "\n".join(lines[start:])
            self.boundary(PARA)
            self.emit_block(code_block(text, self.pre_lang) if self.want_md else "", text)
        self.boundary(PARA)


def attr(attrs: Attrs, name: str) -> str | None:
    for key, value in attrs:
        if key == name:
            return value
    return None


def language(attrs: Attrs) -> str:
    """Fence language from a `language-xxx` / `lang-xxx` class, as highlighters mark code."""
    for cls in (attr(attrs, "class") or "").split():
        for prefix in ("language-", "lang-"):
            if cls.startswith(prefix) and len(cls) > len(prefix):
                return cls[len(prefix) :].replace("`", "")[:40]
    return ""

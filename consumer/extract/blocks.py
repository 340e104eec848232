"""Block assembly for the extractor: markdown and plain text built side by side, one block at a time;
each block records its separator, so the chosen region is cut from one block list, not re-parsed.
"""

from __future__ import annotations

from typing import Any

from consumer.extract.markdown import LINE_START_CHARS, code_span, escape_line_start, split_lines

ITEM, BLOCK, PARA = 1, 2, 3  # separator strength: newline / blank line in markdown only / blank line in both
MAIN, ARTICLE, BOILERPLATE = 0, 1, 2
BREAK = "\n"  # stands for <br> in the inline buffers; real whitespace there is always collapsed

# Small records are plain lists and tuples indexed by these constants: they are made hundreds of times per page.
# An open inline element (strong, em, del, code, link): [delimiter, closing, index in md or -1 unwritten]
F_OPEN, F_CLOSE, F_AT = 0, 1, 2
# A list item or blockquote: (its first-line prefix, the later-line prefix of it and all outer containers,
# its first-line prefix after the later-line ones of the outer containers, a blank line inside it).
# Only the first block in a container gets its first-line prefix, and blocks are written in order, so the
# containers that have written a block are always the outermost `used` ones.
C_FIRST, C_PREFIX, C_OPENING, C_BLANK = 0, 1, 2, 3
# Written blocks are one flat list, four items a block: markdown, the separator before it in markdown, text,
# the separator before it in text (so each column is a slice: blocks[B_MD::4]).
B_MD, B_MD_SEP, B_TX, B_TX_SEP = 0, 1, 2, 3
# An open ul/ol: [ordered, next number, items seen, items open, added an indent]
L_ORDERED, L_NUMBER, L_ITEMS, L_OPEN, L_INDENTED = 0, 1, 2, 3, 4


class BlockWriter:
    """Inline buffers and the block list; mixed into the parser so the hot path stays attribute lookups."""

    # Slots, not a __dict__: attribute access is measurably faster, and this state is read per event.
    __slots__ = (
        "articles",
        "blocks",
        "broken",
        "code",
        "containers",
        "depths",
        "frames",
        "has_text",
        "heading",
        "item_start",
        "lists",
        "marks",
        "md",
        "next_sep",
        "ranges",
        "space",
        "tx",
        "unopened",
        "used",
        "want_md",
    )

    def init_writer(self, want_md: bool) -> None:
        self.want_md = want_md
        self.md: list[str] = []  # inline markdown of the block being built
        self.tx: list[str] = []  # inline plain text of the same block
        self.has_text = False  # the current line has content (a space before the next word is needed)
        self.space = False  # whitespace seen since the last word, not yet written
        self.broken = False  # the inline buffers hold a BREAK
        self.frames: list[list[Any]] = []
        self.unopened = 0  # frames[unopened:] are open elements whose delimiter is not written yet
        self.code = 0
        self.heading = ""
        self.next_sep = 0
        self.item_start = False  # a list item opened and has not written its first block yet
        self.containers: list[tuple[str, str, str, str]] = []
        self.used = 0  # containers[:used] have written a block
        self.lists: list[list[Any]] = []
        self.blocks: list[str] = []
        self.ranges: tuple[list[list[int]], ...] = ([], [], [])
        self.depths = [0, 0, 0]
        self.articles = 0
        self.marks = 0  # region boundaries so far: a table spanning one is layout, never rewritten

    # ---- inline ---------------------------------------------------------------------------------
    def open_frames(self) -> None:
        md = self.md
        for frame in self.frames[self.unopened :]:
            frame[F_AT] = len(md)
            md.append(frame[F_OPEN])
        self.unopened = len(self.frames)

    def pop_frame(self) -> None:
        frame = self.frames.pop()
        if frame[F_OPEN] == "`":
            self.code -= 1
        if frame[F_AT] >= 0:  # written, so it is the last of frames[:unopened]
            self.unopened -= 1
            if frame[F_CLOSE] == "`":
                self._close(frame)
            else:
                self.md.append(frame[F_CLOSE])

    def close_written(self) -> None:
        """Close every written delimiter (end of block or line); they reopen before the next word."""
        for frame in reversed(self.frames[: self.unopened]):
            self._close(frame)
        self.unopened = 0

    def _close(self, frame: list[Any]) -> None:
        md = self.md
        close = frame[F_CLOSE]
        if close == "`":
            content = "".join(md[frame[F_AT] + 1 :])
            if "`" in content:
                md[frame[F_AT]], close = code_span(content)
        md.append(close)
        frame[F_AT] = -1

    def inline_markdown(self, markup: str) -> None:
        """Markup that counts as content but is not text (an image).

        The pending space stays pending for the text, so the plain text never gets two spaces in a row.
        """
        if self.has_text and self.space:
            self.md.append(" ")
        if self.unopened < len(self.frames):
            self.open_frames()
        self.md.append(markup)
        self.has_text = True

    def line_break(self) -> None:
        if self.heading:
            self.space = True
            return
        if self.unopened:
            self.close_written()
        self.md.append(BREAK)
        self.tx.append(BREAK)
        self.has_text = self.space = False
        self.broken = True

    # ---- blocks ---------------------------------------------------------------------------------
    # A list item's first block stays on the marker line, whatever wraps it: while item_start is set,
    # next_sep is ITEM or more and stays as it is (every writer of the pair keeps it so).
    def boundary(self, kind: int) -> None:
        if kind > self.next_sep and not self.item_start:
            self.next_sep = kind

    def end_block_as(self, kind: int) -> None:
        """End the inline run (if any) with a separator at least as strong as `kind` after it."""
        if self.md or self.tx:
            self.flush()
        if kind > self.next_sep and not self.item_start:
            self.next_sep = kind

    def flush(self) -> None:
        """End the inline run and write it as a block (hot callers skip the call when both buffers are empty)."""
        md, tx = self.md, self.tx
        if self.unopened:
            self.close_written()
        m = "".join(md)
        t = "".join(tx).strip(" ")  # an image can leave a space at either end of the text
        md.clear()
        tx.clear()
        self.has_text = self.space = False
        if self.broken or self.heading or (m and m[0] in LINE_START_CHARS):
            m, t = self._finish(m, t)
        if m or t:
            self.emit_block(m, t)

    def _finish(self, m: str, t: str) -> tuple[str, str]:
        """A block with line breaks, a heading, or a start that would read as markdown syntax."""
        if self.broken:
            self.broken = False
            return split_lines(m, t)
        if self.heading:
            return (self.heading + (m[:-1] + "\\#" if m.endswith("#") else m) if m else ""), t
        return escape_line_start(m), t

    def emit_block(self, m: str, t: str) -> None:
        kind = self.next_sep or PARA
        if self.containers and m:
            m, sep = self._prefixed(m, kind)
        else:
            sep = "\n" if kind == ITEM else "\n\n"
        self.blocks += (m, sep, t, "\n\n" if kind == PARA else "\n")
        self.next_sep = 0
        self.item_start = False

    def _prefixed(self, m: str, kind: int) -> tuple[str, str]:
        containers, used = self.containers, self.used
        # the blank line keeps the prefixes of the containers it stays inside
        sep = "\n" if kind == ITEM else containers[used - 1][C_BLANK] if used else "\n\n"
        if used == len(containers):
            first = containers[-1][C_PREFIX]
        elif used == len(containers) - 1:  # the first block of an item
            first = containers[-1][C_OPENING]
        else:
            outer = containers[used - 1][C_PREFIX] if used else ""
            first = outer + "".join([c[C_FIRST] for c in containers[used:]])
        self.used = len(containers)
        if "\n" not in m:
            return first + m, sep
        rest = containers[-1][C_PREFIX]
        bare = rest.rstrip()
        lines = m.split("\n")
        return "\n".join([first + lines[0]] + [rest + line if line else bare for line in lines[1:]]), sep

    # ---- containers -----------------------------------------------------------------------------
    def push_container(self, first: str, rest: str) -> None:
        outer = self.containers[-1][C_PREFIX] if self.containers else ""
        prefix = outer + rest
        self.containers.append((first, prefix, outer + first, "\n" + prefix.rstrip() + "\n"))

    def pop_container(self) -> None:
        self.containers.pop()
        if self.used > len(self.containers):
            self.used = len(self.containers)

    def start_list(self, ordered: bool, number: int) -> None:
        if self.md or self.tx:
            self.flush()
        parent = self.lists[-1] if self.lists else None
        self.boundary(ITEM if parent is not None else PARA)
        indented = parent is not None and not parent[L_OPEN]
        if indented:  # <ul> straight inside <ul>: browsers indent it under the previous item
            self.push_container("  ", "  ")
        self.lists.append([ordered, number, 0, 0, indented])

    def end_list(self) -> None:
        if self.md or self.tx:
            self.flush()
        if self.lists.pop()[L_INDENTED]:
            self.pop_container()
        self.boundary(BLOCK if self.lists else PARA)

    def start_item(self, value: int | None) -> None:
        if self.md or self.tx:
            self.flush()
        if not self.lists:
            self.boundary(PARA)
            self.push_container("- ", "  ")
        else:
            lst = self.lists[-1]
            if lst[L_ORDERED]:
                if value is not None:
                    lst[L_NUMBER] = value
                marker = f"{lst[L_NUMBER]}. "
                lst[L_NUMBER] += 1
                self.push_container(marker, " " * len(marker))
            else:
                self.push_container("- ", "  ")
            if lst[L_ITEMS] or self.next_sep < ITEM:
                self.next_sep = ITEM  # items stay tight even after a nested list or paragraph
            lst[L_ITEMS] += 1
            lst[L_OPEN] += 1
        self.item_start = True

    def end_item(self) -> None:
        if self.md or self.tx:
            self.flush()
        self.pop_container()
        if self.lists:
            self.lists[-1][L_OPEN] -= 1
        self.item_start = False
        if self.next_sep < ITEM:
            self.next_sep = ITEM

    def start_quote(self) -> None:
        if self.md or self.tx:
            self.flush()
        self.boundary(PARA)
        self.push_container("> ", "> ")

    def end_quote(self) -> None:
        if self.md or self.tx:
            self.flush()
        self.pop_container()
        self.boundary(PARA)

    # ---- regions --------------------------------------------------------------------------------
    def enter_region(self, kind: int) -> None:
        if self.md or self.tx:
            self.flush()
        self.boundary(BLOCK)
        self.marks += 1
        if not self.depths[kind]:
            self.ranges[kind].append([len(self.blocks) // 4, -1])
        self.depths[kind] += 1
        if kind == ARTICLE:
            self.articles += 1

    def leave_region(self, kind: int) -> None:
        if self.md or self.tx:
            self.flush()
        self.boundary(BLOCK)
        self.marks += 1
        self.depths[kind] -= 1
        if not self.depths[kind]:
            self.ranges[kind][-1][1] = len(self.blocks) // 4

    def leave_main(self) -> None:
        self.leave_region(MAIN)

    def leave_article(self) -> None:
        self.leave_region(ARTICLE)

    def leave_boilerplate(self) -> None:
        self.leave_region(BOILERPLATE)

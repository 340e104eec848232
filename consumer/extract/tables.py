"""Tables for the extractor: cells are written as ordinary blocks; at </table> a data table replaces them
with one GFM table, while a layout table stays the blocks it already is (as a browser shows it).
"""

from __future__ import annotations

from consumer.extract.blocks import BLOCK, PARA, BlockWriter
from consumer.extract.markdown import table, table_cell

_MAX_BLOCKS_PER_CELL = 3

Cell = tuple[list[str], list[str]]  # the markdown and text blocks written inside one cell


class Table:
    """An open table: its rows of cells and what to restore if its cell blocks are replaced."""

    __slots__ = ("caption", "cell", "layout", "marks", "row", "rows", "saved", "start", "stray")

    def __init__(self, writer: BlockWriter, *, layout: bool) -> None:
        self.layout = layout
        self.start = len(writer.blocks)  # four items a block
        self.marks = writer.marks
        self.saved = (writer.next_sep, writer.item_start, writer.used)
        self.rows: list[list[Cell]] = []
        self.row: list[Cell] | None = None
        self.cell: Cell | None = None
        self.caption: Cell | None = None
        self.stray: Cell = ([], [])  # blocks inside the table but in no cell: a browser shows them before it


class TableWriter(BlockWriter):
    """A `BlockWriter` that also keeps every block written inside a table, in case it becomes a GFM table."""

    __slots__ = ("tables",)

    def init_writer(self, want_md: bool) -> None:
        super().init_writer(want_md)
        self.tables: list[Table] = []

    def emit_block(self, m: str, t: str) -> None:
        if self.tables:
            table = self.tables[-1]
            cell = table.stray if table.cell is None else table.cell
            cell[0].append(m)
            cell[1].append(t)
        super().emit_block(m, t)

    def start_table(self, *, layout: bool) -> None:
        self.flush()
        self.boundary(PARA)
        if self.tables:
            self.tables[-1].layout = True  # a table inside a table is page layout, not data
        self.tables.append(Table(self, layout=layout))

    def end_table(self) -> None:
        self.end_row()
        self.flush()
        t = self.tables.pop()
        if self._is_data(t):
            self._replace_with_table(t)
        self.boundary(PARA)

    def start_row(self) -> None:
        self.end_row()
        self.tables[-1].row = []

    def end_row(self) -> None:
        self.end_cell()
        t = self.tables[-1]
        if t.row:
            t.rows.append(t.row)
        t.row = None

    def start_cell(self) -> None:
        self.end_cell()
        self.flush()
        self.boundary(BLOCK)
        t = self.tables[-1]
        if t.row is None:
            t.row = []
        t.cell = ([], [])
        t.row.append(t.cell)

    def end_cell(self) -> None:
        t = self.tables[-1]
        if t.cell is not None:
            self.flush()
            t.cell = None
            self.boundary(BLOCK)

    def start_caption(self) -> None:
        self.end_row()
        self.flush()
        self.boundary(PARA)
        t = self.tables[-1]
        t.caption = t.cell = ([], [])

    def end_caption(self) -> None:
        self.flush()
        self.tables[-1].cell = None
        self.boundary(PARA)

    def _is_data(self, t: Table) -> bool:
        if t.layout or t.marks != self.marks or not t.rows:
            return False
        if max(len(row) for row in t.rows) < 2:
            return False
        return all(len(cell[1]) <= _MAX_BLOCKS_PER_CELL for row in t.rows for cell in row)

    def _replace_with_table(self, t: Table) -> None:
        del self.blocks[t.start :]
        self.next_sep, self.item_start, used = t.saved
        self.used = min(used, len(self.containers))
        for m, tx in zip(*t.stray, strict=True):
            self.emit_block(m, tx)
            self.boundary(PARA)
        if t.caption is not None and (t.caption[0] or t.caption[1]):
            self.emit_block(" ".join(t.caption[0]), " ".join(t.caption[1]))
            self.boundary(PARA)
        # Rendered even when only text is wanted: whether a region has content must not depend on that.
        md = table([[table_cell(" ".join(c[0])) for c in row] for row in t.rows])
        tx = "\n".join("\t".join(" ".join(c[1]).replace("\n", " ") for c in row).rstrip() for row in t.rows)
        self.emit_block(md, tx)

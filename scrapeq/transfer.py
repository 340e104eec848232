"""Backup and restore of all KV data as JSON lines: `{"key", "value", "expiration", "metadata"}` per line."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from shared.backups import decode_record, export_record, write_record
from shared.ports import Clock, KeyValueStore, scan


async def export_lines(kv: KeyValueStore) -> AsyncIterator[str]:
    """Every live key, in key order, as one JSON line each (without the trailing newline)."""
    async for info in scan(kv, ""):
        line = await export_record(kv, info)
        if line is not None:  # None: expired or deleted while exporting
            yield line


async def import_lines(kv: KeyValueStore, lines: Iterable[str], *, clock: Clock) -> tuple[int, int]:
    """Write every record back; returns (imported, skipped as already expired). Raises ValueError on bad input."""
    imported = skipped = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if await write_record(kv, decode_record(line, number), clock=clock):
            imported += 1
        else:
            skipped += 1
    return imported, skipped

"""Backup and restore of all KV data as JSON lines: `{"key", "value", "expiration", "metadata"}` per line."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterable

from shared.ports import MIN_TTL_S, Clock, KeyValueStore, scan


async def export_lines(kv: KeyValueStore) -> AsyncIterator[str]:
    """Every live key, in key order, as one JSON line each (without the trailing newline)."""
    async for info in scan(kv, ""):
        value = await kv.get(info.name)
        if value is None:  # expired or deleted while exporting
            continue
        record = {"key": info.name, "value": value, "expiration": info.expiration, "metadata": info.metadata}
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":"))


async def import_lines(kv: KeyValueStore, lines: Iterable[str], *, clock: Clock) -> tuple[int, int]:
    """Write every record back; returns (imported, skipped as already expired). Raises ValueError on bad input."""
    imported = skipped = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key, value = record["key"], record["value"]
            expiration = record.get("expiration")
            metadata = record.get("metadata")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"line {number}: not an export record ({exc})") from None
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"line {number}: key and value must be strings")
        ttl_s = None
        if expiration is not None:
            remaining = float(expiration) - clock()
            if remaining <= 0:
                skipped += 1
                continue
            ttl_s = max(MIN_TTL_S, math.ceil(remaining))
        await kv.put(key, value, ttl_s=ttl_s, metadata=metadata)
        imported += 1
    return imported, skipped

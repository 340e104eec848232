"""Cloudflare's KV and Queues limits, checked by every local backend so what passes here passes there."""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
import time
from typing import Any

from shared.ports import MAX_LIST_LIMIT, MIN_TTL_S, JsonObject

# Cloudflare's limits, enforced locally so that what passes here also passes there.
MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 25 * 1024 * 1024
MAX_METADATA_BYTES = 1024
MAX_BODY_BYTES = 128_000  # Cloudflare counts 1 KB as 1000 B.
MAX_DELAY_S = 43_200  # The older 12 h limit; the live 24 h one is not yet everywhere.
MAX_RECEIVE = 100  # Cloudflare's largest consumer batch.
JOBS_QUEUE = "jobs"
DEAD_LETTER_QUEUE = "jobs-dlq"


def new_message_id() -> str:
    """32 hex digits, time-ordered so that SQLite's id index grows at its right edge (random UUIDs made
    sends and acks about 25% slower at a 100k backlog), with 64 random bits against collisions."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


def check_key(key: str) -> None:
    if not isinstance(key, str):
        raise TypeError(f"KV keys are str, not {type(key).__name__}")
    if key in ("", ".", ".."):
        raise ValueError(f"invalid KV key {key!r}")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"KV key longer than {MAX_KEY_BYTES} bytes")


def check_value(value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"KV values are str, not {type(value).__name__}")
    # Encoding is only worth its cost when the string could be over the limit (≤ 4 bytes a character).
    if len(value) * 4 > MAX_VALUE_BYTES and len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise ValueError(f"KV value larger than {MAX_VALUE_BYTES} bytes")


def expiry_for(ttl_s: float | None, now: float) -> float | None:
    """The absolute expiry for a TTL; Cloudflare refuses anything under a minute."""
    if ttl_s is None:
        return None
    if not ttl_s >= MIN_TTL_S or math.isinf(ttl_s):  # `not >=` also catches NaN
        raise ValueError(f"ttl_s must be at least {MIN_TTL_S} s, got {ttl_s}")
    return now + ttl_s


def encode_json(value: Any, *, what: str, limit: int) -> str:
    """Serialise to compact JSON (no NaN, as JSON has none) within `limit` UTF-8 bytes."""
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict, not {type(value).__name__}")
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from exc
    if len(text.encode("utf-8")) > limit:
        raise ValueError(f"{what} is larger than {limit} bytes serialised")
    return text


def encode_metadata(metadata: JsonObject | None) -> str | None:
    return None if metadata is None else encode_json(metadata, what="KV metadata", limit=MAX_METADATA_BYTES)


def encode_body(body: JsonObject) -> str:
    return encode_json(body, what="message body", limit=MAX_BODY_BYTES)


def check_delay(delay_s: float) -> None:
    if not 0 <= delay_s <= MAX_DELAY_S:
        raise ValueError(f"delay_s must be within 0..{MAX_DELAY_S}, got {delay_s}")


def check_receive(max_messages: int, wait_s: float) -> None:
    if not 1 <= max_messages <= MAX_RECEIVE:
        raise ValueError(f"max_messages must be within 1..{MAX_RECEIVE}, got {max_messages}")
    if not 0 <= wait_s < math.inf:
        raise ValueError(f"wait_s must be a finite number ≥ 0, got {wait_s}")


def check_list_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be within 1..{MAX_LIST_LIMIT}, got {limit}")


def encode_cursor(last_key: str) -> str:
    """A cursor is the last key returned, so a page resumes after it even if keys changed meanwhile."""
    return base64.urlsafe_b64encode(last_key.encode("utf-8")).decode("ascii")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError) as exc:
        raise ValueError("invalid list cursor") from exc


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (None: no bound), so that listing a
    prefix is one index range. Code-point order is UTF-8 byte order, the order KV lists keys in."""
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return None
    after = ord(stem[-1]) + 1
    if 0xD800 <= after <= 0xDFFF:  # surrogates never occur in valid UTF-8 text
        after = 0xE000
    return stem[:-1] + chr(after)

"""The harness RPC's values: JSON, plus the Python values JSON lacks, so that a contract test's argument reaches
the adapter inside Pyodide as the very value the test passed (bytes, a set, an arbitrary object) and the
adapter's own checks refuse it there. NaN and infinities travel as Python's JSON extensions (both ends are
Python: the Node side forwards lines unparsed). Stdlib only: this module runs in Pyodide too.
"""

from __future__ import annotations

import json
from typing import Any

TAG = "$py"


def encode(value: Any) -> Any:
    """`value` as JSON-ready data; what JSON cannot hold becomes a tagged object."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(key): encode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, tuple):
        return {TAG: "tuple", "items": [encode(item) for item in value]}
    if isinstance(value, bytes | bytearray):
        return {TAG: "bytes", "hex": bytes(value).hex()}
    if isinstance(value, set | frozenset):
        return {TAG: "set", "items": [encode(item) for item in value]}
    return {TAG: "object", "repr": repr(value)}


def decode(value: Any) -> Any:
    """The inverse of `encode` (an arbitrary object comes back as a fresh `object()`)."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(TAG)
    if kind == "tuple":
        return tuple(decode(item) for item in value["items"])
    if kind == "bytes":
        return bytes.fromhex(value["hex"])
    if kind == "set":
        return {decode(item) for item in value["items"]}
    if kind == "object":
        return object()
    return {key: decode(item) for key, item in value.items()}


def dumps(message: dict[str, Any]) -> str:
    """One line of the protocol."""
    return json.dumps(message, ensure_ascii=True, separators=(",", ":"))

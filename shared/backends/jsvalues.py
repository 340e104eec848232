"""Values between JS and Python for the Cloudflare adapters and `consumer.fetch.js_transport`, and the JS `fetch`
plumbing; on CPython every conversion is the identity. Standard library only.
"""

from __future__ import annotations

import functools
import importlib
import sys
from types import ModuleType
from typing import Any

from shared.ports import JsonObject


@functools.cache
def _ffi() -> ModuleType | None:
    """`pyodide.ffi` inside Pyodide, else None (CPython, where there are no JS values to convert)."""
    if sys.platform != "emscripten":
        return None
    return importlib.import_module("pyodide.ffi")


def to_py(value: Any) -> Any:
    """A binding's result as Python: null and undefined → None, a JsProxy → dicts and lists (nested nulls → None).

    Anything else (already Python, as the SDK wrapper returns) comes back unchanged.
    """
    ffi = _ffi()
    if ffi is None or value is None:
        return value
    if value is ffi.jsnull:
        return None
    if isinstance(value, ffi.JsProxy):
        # `to_py()` leaves nested nulls as `jsnull` (the SDK walks its results for the same reason).
        return _nulls_to_none(value.to_py(), ffi.jsnull)
    return value


def _nulls_to_none(value: Any, jsnull: object) -> Any:
    if value is jsnull:
        return None
    if isinstance(value, dict):
        return {key: _nulls_to_none(item, jsnull) for key, item in value.items()}
    if isinstance(value, list):
        return [_nulls_to_none(item, jsnull) for item in value]
    return value


def to_js_object(value: Any) -> Any:
    """A dict (nested dicts and lists too) as a plain JS Object; the identity on CPython.

    `to_js` alone makes `undefined` of None, which drops the key (None becomes `jsnull` first, as the SDK's own
    conversion does), and in Pyodide 0.28 (compatibility dates before 2026-09-08) a Map of a dict, which JSON and
    the bindings' option parsing do not read (Pyodide 314 makes Objects by default; the converter keeps both right).
    """
    ffi = _ffi()
    if ffi is None:
        return value
    js = importlib.import_module("js")
    return ffi.to_js(_none_to_nulls(value, ffi.jsnull), dict_converter=js.Object.fromEntries)


def _none_to_nulls(value: Any, jsnull: object) -> Any:
    if value is None:
        return jsnull
    if isinstance(value, dict):
        return {key: _none_to_nulls(item, jsnull) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_none_to_nulls(item, jsnull) for item in value]
    return value


def to_js_bytes(data: bytes) -> Any:
    """Bytes as a JS `Uint8Array` of their own (a copy, so Python's buffer can go at once); unchanged on CPython."""
    if _ffi() is None:
        return data
    array = importlib.import_module("js").Uint8Array.new(len(data))
    array.assign(data)
    return array


def from_js_bytes(value: Any) -> bytes:
    """An `ArrayBuffer` or typed array a binding returned (or the SDK's Python buffer) as bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return bytes(value.to_bytes())


def is_null(value: Any) -> bool:
    """Whether a JS attribute is null or undefined, without converting it."""
    ffi = _ffi()
    return value is None or (ffi is not None and value is ffi.jsnull)


def is_js_error(exc: BaseException) -> bool:
    """Whether `exc` is a JS error surfacing in Python (a rejected promise, a throwing binding)."""
    ffi = _ffi()
    if ffi is not None:
        return isinstance(exc, ffi.JsException)
    return type(exc).__name__ == "JsException"  # the fakes of the CPython tests


# --- JS fetch (for consumer.fetch.js_transport)


def fetch_init(method: str, headers: list[tuple[str, str]], body: bytes, signal: Any = None) -> Any:
    """The `init` of a JS `fetch`: redirects come back as 3xx responses instead of being followed."""
    init: JsonObject = {"method": method, "headers": [[name, value] for name, value in headers], "redirect": "manual"}
    if body:
        init["body"] = body  # to_js makes a Uint8Array of bytes
    if signal is not None:
        init["signal"] = signal
    return to_js_object(init)


def response_status(response: Any) -> int:
    return int(to_py(response.status))


def response_headers(response: Any) -> list[tuple[str, str]]:
    """Every header of a JS `Response`, as `Headers.entries()` lists them (names lower-case)."""
    return [(str(name), str(value)) for name, value in (to_py(entry) for entry in response.headers.entries())]


def body_reader(response: Any) -> Any | None:
    """A reader of the response body stream, or None for a response without a body."""
    body = response.body
    return None if is_null(body) else body.getReader()


async def read_chunk(reader: Any) -> bytes | None:
    """The next chunk of a body stream (`{done, value: Uint8Array}`), or None at its end."""
    result = await reader.read()
    if result.done:
        return None
    value = result.value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return bytes(value.to_bytes())


async def cancel_reader(reader: Any) -> None:
    """Stop a body stream early, so the rest is never downloaded; a stream that already failed is fine."""
    try:
        await reader.cancel()
    except Exception as exc:
        if not is_js_error(exc):
            raise


def abort_controller() -> Any | None:
    """A JS `AbortController` (to stop a fetch whose caller gave up), or None outside Pyodide."""
    if _ffi() is None:
        return None
    return importlib.import_module("js").AbortController.new()

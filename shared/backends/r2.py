"""Cloudflare's R2 bucket binding behind the object port (`ObjectStore`): writes in multipart uploads of fixed-size
parts, ranged reads, listing, deletes; standard library only (`jsvalues` converts, as for KV).
"""

# Memory bound: a writer holds at most one part (`PART_BYTES`) plus the piece being written, and every FFI copy is
# one part or one read range, far under the ~40 MB round trip that crashes an isolate. R2 wants every part but the
# last of one size, at least 5 MiB, and the last no larger; an object smaller than a part is one plain `put`.

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from shared.backends.jsvalues import from_js_bytes, is_js_error, is_null, to_js_bytes, to_js_object, to_py
from shared.errors import StorageError
from shared.ports import ObjectInfo

PART_BYTES = 8 * 1024 * 1024
MIN_PART_BYTES = 5 * 1024 * 1024


async def _call(what: str, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    try:
        return await method(*args)
    except Exception as exc:
        if not is_js_error(exc):
            raise
        raise StorageError(f"R2 {what} failed: {exc}") from exc


def _field(obj: Any, name: str) -> Any:
    """A field of an R2 result: a dict where the SDK wrapper converted it, else a JS object's attribute."""
    if isinstance(obj, dict):
        return obj.get(name)
    return to_py(getattr(obj, name, None))


class CloudflareR2:
    """`ObjectStore` over an R2 bucket binding (`put`, `head`, `get` with a range, `list`, `delete`, multipart)."""

    def __init__(self, binding: Any, *, part_bytes: int = PART_BYTES) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"R2 parts are at least {MIN_PART_BYTES} bytes")
        self._binding = binding
        self.part_bytes = part_bytes

    def writer(self, key: str) -> R2Writer:
        return R2Writer(self._binding, key, self.part_bytes)

    async def size(self, key: str) -> int | None:
        found = await _call("head", self._binding.head, key)
        return None if is_null(found) else int(_field(found, "size"))

    async def read(self, key: str, offset: int, length: int) -> bytes:
        options = to_js_object({"range": {"offset": offset, "length": length}})
        found = await _call("get", self._binding.get, key, options)
        if is_null(found):
            raise StorageError(f"R2 get {key!r}: no such object")
        return from_js_bytes(await _call("read", found.arrayBuffer))

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        cursor: str | None = None
        while True:
            options: dict[str, Any] = {"prefix": prefix, "limit": 1000}
            if cursor:
                options["cursor"] = cursor
            page = await _call("list", self._binding.list, to_js_object(options))
            for item in _field(page, "objects") or []:
                yield ObjectInfo(str(_field(item, "key")), int(_field(item, "size")))
            cursor = _field(page, "cursor") if _field(page, "truncated") else None
            if not cursor:
                return

    async def delete(self, key: str) -> None:
        await _call("delete", self._binding.delete, key)


class R2Writer:
    """One object: pieces gather into parts of exactly `part_bytes`; the first full part starts a multipart upload."""

    def __init__(self, binding: Any, key: str, part_bytes: int) -> None:
        self._binding = binding
        self.key = key
        self.part_bytes = part_bytes
        self._buffer = bytearray()
        self._upload: Any = None
        self._parts: list[dict[str, Any]] = []

    async def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= self.part_bytes:
            if self._upload is None:
                self._upload = await _call("createMultipartUpload", self._binding.createMultipartUpload, self.key)
            await self._send_part(self.part_bytes)

    async def _send_part(self, size: int) -> None:
        number = len(self._parts) + 1
        body = to_js_bytes(bytes(self._buffer[:size]))
        del self._buffer[:size]
        uploaded = await _call("uploadPart", self._upload.uploadPart, number, body)
        self._parts.append({"partNumber": number, "etag": str(_field(uploaded, "etag"))})

    async def close(self) -> None:
        if self._upload is None:
            await _call("put", self._binding.put, self.key, to_js_bytes(bytes(self._buffer)))
        else:
            if self._buffer:
                await self._send_part(len(self._buffer))
            await _call("complete", self._upload.complete, to_js_object(self._parts))
        self._buffer = bytearray()

    async def abort(self) -> None:
        """Drop what was uploaded (R2 would drop an unfinished upload after 7 days anyway)."""
        self._buffer = bytearray()
        if self._upload is not None:
            try:
                await _call("abort", self._upload.abort)
            except StorageError:
                pass

"""Object stores without Cloudflare: in memory (tests) and a local directory (`scrapeq cloudflare backup --out`),
with R2's semantics for backups: an object appears whole on `close`, never in part.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from shared.ports import ObjectInfo


class MemoryObjects:
    """Objects in a dict, by key."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def writer(self, key: str) -> MemoryObjectWriter:
        return MemoryObjectWriter(self, key)

    async def size(self, key: str) -> int | None:
        found = self.objects.get(key)
        return None if found is None else len(found)

    async def read(self, key: str, offset: int, length: int) -> bytes:
        return self.objects[key][offset : offset + length]

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        for key in sorted(k for k in self.objects if k.startswith(prefix)):
            yield ObjectInfo(key, len(self.objects[key]))

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)


class MemoryObjectWriter:
    def __init__(self, store: MemoryObjects, key: str) -> None:
        self.store = store
        self.key = key
        self.buffer = bytearray()

    async def write(self, data: bytes) -> None:
        self.buffer += data

    async def close(self) -> None:
        self.store.objects[self.key] = bytes(self.buffer)

    async def abort(self) -> None:
        self.buffer = bytearray()


def _relative(key: str) -> PurePosixPath:
    path = PurePosixPath(key)
    if not key or path.is_absolute() or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"not an object key for a directory: {key!r}")
    return path


class DirectoryObjects:
    """Objects as files under `root` (a key's `/` separates directories); written to a `.partial` file first."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / _relative(key)

    def writer(self, key: str) -> FileObjectWriter:
        return FileObjectWriter(self.path(key))

    async def size(self, key: str) -> int | None:
        path = self.path(key)
        return path.stat().st_size if path.is_file() else None

    async def read(self, key: str, offset: int, length: int) -> bytes:
        with self.path(key).open("rb") as file:
            file.seek(offset)
            return file.read(length)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        if not self.root.is_dir():
            return
        found = sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        for key in found:
            if key.startswith(prefix) and not key.endswith(FileObjectWriter.SUFFIX):
                yield ObjectInfo(key, self.path(key).stat().st_size)

    async def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


class FileObjectWriter:
    SUFFIX = ".partial"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + self.SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.partial.open("wb")

    async def write(self, data: bytes) -> None:
        self.file.write(data)

    async def close(self) -> None:
        self.file.close()
        os.replace(self.partial, self.path)

    async def abort(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)

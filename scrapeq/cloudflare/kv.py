"""The KV port over a remote Workers KV namespace through `wrangler kv key … --remote`, for admin commands
(one wrangler process per call): tenants and keys created in a deployed namespace.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from scrapeq.cloudflare.wrangler import Result, Wrangler, WranglerError, parse_json
from shared.backends.kvlimits import (
    check_key,
    check_list_limit,
    check_value,
    decode_cursor,
    encode_cursor,
    encode_metadata,
    expiry_for,
)
from shared.errors import StorageError
from shared.ports import MAX_LIST_LIMIT, JsonObject, KeyInfo, KVWrite, ListResult


class WranglerKV:
    """`KeyValueStore` over `wrangler kv key get/put/list/delete --namespace-id <id> --remote`.

    Values travel through a private temporary file (`--path`), never the command line, where other users of the
    machine could read them; wrangler then logs the file name instead of the value.
    """

    def __init__(self, wrangler: Wrangler, namespace_id: str) -> None:
        self.wrangler = wrangler
        self.namespace_id = namespace_id

    async def get(self, key: str) -> str | None:
        _check_key(key)
        result = await self._run("get", key, check=False)
        if result.ok:
            return result.stdout  # raw bytes of the value: wrangler writes them without a newline
        if "404" in result.output:
            return None
        raise StorageError(f"KV get {key!r} failed: {result.tail()}")

    async def put(
        self, key: str, value: str, *, ttl_s: float | None = None, metadata: JsonObject | None = None
    ) -> None:
        _check_key(key)
        check_value(value)
        expiry_for(ttl_s, time.time())  # refuses TTLs under a minute, as Cloudflare does
        options: list[str] = []
        if ttl_s is not None:
            options += ["--ttl", str(math.ceil(ttl_s))]
        if (meta := encode_metadata(metadata)) is not None:
            options += ["--metadata", meta]
        with tempfile.TemporaryDirectory(prefix="scrapeq-kv-") as scratch:  # created with mode 0700
            path = Path(scratch) / "value"
            path.write_text(value, encoding="utf-8")
            await self._run("put", key, "--path", str(path), *options)

    async def put_many(self, writes: Sequence[KVWrite]) -> None:
        """One `wrangler kv key put` after another (each is a process); every write is checked first."""
        for write in writes:
            _check_key(write.key)
            check_value(write.value)
            expiry_for(write.ttl_s, time.time())
            encode_metadata(write.metadata)
        for write in writes:
            await self.put(write.key, write.value, ttl_s=write.ttl_s, metadata=write.metadata)

    async def delete(self, key: str) -> None:
        _check_key(key)
        await self._run("delete", key)

    async def scrub(self) -> None:
        """Workers KV drops deleted values itself."""

    async def list(self, *, prefix: str = "", limit: int = MAX_LIST_LIMIT, cursor: str | None = None) -> ListResult:
        """One page. wrangler lists the whole prefix at once (ordered by key); the cursor is the last key returned."""
        check_list_limit(limit)
        after = decode_cursor(cursor) if cursor is not None else None
        listed = parse_json((await self._run("list", *(["--prefix", prefix] if prefix else []))).stdout)
        if not isinstance(listed, list):
            raise StorageError("`wrangler kv key list` did not print a JSON list")
        infos = sorted((_key_info(item) for item in listed), key=lambda info: info.name.encode("utf-8"))
        remaining = [info for info in infos if after is None or info.name.encode("utf-8") > after.encode("utf-8")]
        page = remaining[:limit]
        if len(remaining) > limit:
            return ListResult(keys=page, list_complete=False, cursor=encode_cursor(page[-1].name))
        return ListResult(keys=page, list_complete=True)

    async def _run(self, action: str, *args: str, check: bool = True) -> Result:
        argv = ("kv", "key", action, *args, "--namespace-id", self.namespace_id, "--remote")
        try:
            return await self.wrangler.run_async(*argv, check=check)
        except WranglerError as exc:
            raise StorageError(str(exc)) from exc


def _check_key(key: str) -> None:
    check_key(key)
    if key.startswith("-"):
        raise ValueError(f"KV keys starting with '-' would read as wrangler options: {key!r}")


def _key_info(item: object) -> KeyInfo:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise StorageError(f"unexpected entry in `wrangler kv key list`: {json.dumps(item)[:200]}")
    expiration = item.get("expiration")
    metadata = item.get("metadata")
    return KeyInfo(
        name=item["name"],
        expiration=float(expiration) if isinstance(expiration, int | float) else None,
        metadata=metadata if isinstance(metadata, dict) else None,
    )

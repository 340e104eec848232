"""`KeyValueStore.put_many`, on every backend: what `put` does for each key, and nothing made when one is refused."""

from __future__ import annotations

import pytest

from shared.backends.base import Backends
from shared.ports import KeyValueStore, KVWrite


@pytest.fixture
def kv(backends: Backends) -> KeyValueStore:
    return backends.kv


async def test_put_many_stores_each_value_ttl_and_metadata(kv: KeyValueStore) -> None:
    await kv.put("b", "old", metadata={"v": 0})
    await kv.put_many(
        [
            KVWrite("a", "1"),
            KVWrite("b", "2"),  # overwrites value and drops the metadata, as `put` does
            KVWrite("c", "3", ttl_s=3600, metadata={"limit": 7}),
        ]
    )
    assert [await kv.get(k) for k in "abc"] == ["1", "2", "3"]
    page = await kv.list()
    listed = {k.name: k for k in page.keys}
    assert listed["b"].metadata is None and listed["b"].expiration is None
    assert listed["c"].metadata == {"limit": 7} and listed["c"].expiration is not None
    assert listed["a"].expiration is None


async def test_put_many_of_nothing_is_fine(kv: KeyValueStore) -> None:
    await kv.put_many([])
    assert (await kv.list()).keys == []


@pytest.mark.parametrize(
    "bad",
    [KVWrite("", "v"), KVWrite("k" * 513, "v"), KVWrite("k", b"bytes"), KVWrite("k", "v", ttl_s=5)],  # type: ignore[arg-type]
    ids=["empty key", "long key", "bytes value", "short ttl"],
)
async def test_a_refused_write_refuses_them_all_before_any_is_made(kv: KeyValueStore, bad: KVWrite) -> None:
    with pytest.raises((ValueError, TypeError)):
        await kv.put_many([KVWrite("first", "1"), bad, KVWrite("last", "3")])
    assert await kv.get("first") is None
    assert await kv.get("last") is None

"""The KV contract (Workers KV semantics), run against every backend."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from shared.backends.base import Backends
from shared.ports import MAX_LIST_LIMIT, MIN_TTL_S, KeyValueStore

if TYPE_CHECKING:
    from tests.contract.conftest import FakeClock


@pytest.fixture
def kv(backends: Backends) -> KeyValueStore:
    return backends.kv


async def all_names(kv: KeyValueStore, prefix: str = "", limit: int = MAX_LIST_LIMIT) -> list[str]:
    names: list[str] = []
    cursor: str | None = None
    while True:
        page = await kv.list(prefix=prefix, limit=limit, cursor=cursor)
        names.extend(key.name for key in page.keys)
        if page.list_complete:
            assert page.cursor is None
            return names
        assert page.cursor is not None
        cursor = page.cursor


async def test_get_returns_what_put_stored(kv: KeyValueStore) -> None:
    await kv.put("a", "1")
    assert await kv.get("a") == "1"


async def test_get_of_missing_key_is_none(kv: KeyValueStore) -> None:
    assert await kv.get("nope") is None


async def test_put_overwrites_value_and_metadata(kv: KeyValueStore) -> None:
    await kv.put("a", "1", metadata={"v": 1})
    await kv.put("a", "2")
    assert await kv.get("a") == "2"
    page = await kv.list()
    assert [(k.name, k.metadata) for k in page.keys] == [("a", None)]


async def test_values_keep_unicode_and_empty_strings(kv: KeyValueStore) -> None:
    await kv.put("ü/ключ", "")
    await kv.put("b", "snow ☃ \x00 end")
    assert await kv.get("ü/ключ") == ""
    assert await kv.get("b") == "snow ☃ \x00 end"


async def test_delete_removes_key_and_missing_delete_is_fine(kv: KeyValueStore) -> None:
    await kv.put("a", "1")
    await kv.delete("a")
    await kv.delete("a")
    await kv.delete("never-existed")
    assert await kv.get("a") is None
    assert (await kv.list()).keys == []


@pytest.mark.needs_clock
async def test_expired_key_is_invisible_to_get_and_list(kv: KeyValueStore, clock: FakeClock) -> None:
    await kv.put("short", "x", ttl_s=60)
    await kv.put("long", "y", ttl_s=3600)
    clock.advance(59)
    assert await kv.get("short") == "x"
    clock.advance(1)
    assert await kv.get("short") is None
    assert await all_names(kv) == ["long"]


async def test_list_reports_absolute_expiration(kv: KeyValueStore, clock: FakeClock) -> None:
    await kv.put("k", "v", ttl_s=120)
    await kv.put("forever", "v")
    assert await kv.get("k") == "v"
    keys = {k.name: k.expiration for k in (await kv.list()).keys}
    assert keys == {"k": pytest.approx(clock.now + 120, abs=2), "forever": None}  # Cloudflare: whole seconds


async def test_put_again_without_ttl_drops_the_expiration(kv: KeyValueStore) -> None:
    await kv.put("k", "1", ttl_s=60)
    await kv.put("k", "2")
    assert [(k.name, k.expiration) for k in (await kv.list()).keys] == [("k", None)]


@pytest.mark.needs_clock
async def test_put_again_without_ttl_makes_key_permanent(kv: KeyValueStore, clock: FakeClock) -> None:
    await kv.put("k", "1", ttl_s=60)
    await kv.put("k", "2")
    clock.advance(10_000)
    assert await kv.get("k") == "2"


@pytest.mark.needs_clock
async def test_many_expired_keys_do_not_hide_live_ones(kv: KeyValueStore, clock: FakeClock) -> None:
    # Enough puts to trigger the lazy purge of expired rows on the SQLite backend.
    for i in range(600):
        await kv.put(f"old:{i:04d}", "x", ttl_s=60)
    clock.advance(61)
    for i in range(300):
        await kv.put(f"new:{i:04d}", "y")
    assert await all_names(kv, limit=100) == [f"new:{i:04d}" for i in range(300)]
    assert await kv.get("old:0001") is None


@pytest.mark.parametrize("ttl_s", [0, 1, MIN_TTL_S - 0.5, -60, float("nan")])
async def test_ttl_under_a_minute_is_rejected(kv: KeyValueStore, ttl_s: float) -> None:
    with pytest.raises(ValueError):
        await kv.put("k", "v", ttl_s=ttl_s)
    assert await kv.get("k") is None


async def test_metadata_round_trips_through_list(kv: KeyValueStore) -> None:
    meta = {"status": "done", "pages": 3, "tags": ["a", "ü"], "nested": {"ok": True, "none": None}}
    await kv.put("task:1", "{}", metadata=meta)
    [info] = (await kv.list(prefix="task:")).keys
    assert info.metadata == meta


@pytest.mark.parametrize(
    "metadata", [{"blob": "x" * 1024}, {"x": float("nan")}, {"x": object()}], ids=["too-big", "nan", "object"]
)
async def test_unserialisable_or_oversized_metadata_is_rejected(kv: KeyValueStore, metadata: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        await kv.put("k", "v", metadata=metadata)


async def test_list_returns_prefix_matches_in_key_order(kv: KeyValueStore) -> None:
    for name in ["b:2", "a:1", "b:10", "b:1", "c", "b", "b:ü", "b:z", "ba"]:
        await kv.put(name, "v")
    assert await all_names(kv, prefix="b:") == ["b:1", "b:10", "b:2", "b:z", "b:ü"]
    assert await all_names(kv) == ["a:1", "b", "b:1", "b:10", "b:2", "b:z", "b:ü", "ba", "c"]


async def test_list_orders_by_utf8_bytes_and_bounds_unicode_prefixes(kv: KeyValueStore) -> None:
    names = ["\U0010ffff", "\U0010ffffa", "\ud7ff", "\ud7ffx", "\ue000", "z", "é", "€"]
    for name in names:
        await kv.put(name, "v")
    assert await all_names(kv) == sorted(names, key=lambda n: n.encode("utf-8"))
    assert await all_names(kv, prefix="\U0010ffff") == ["\U0010ffff", "\U0010ffffa"]
    assert await all_names(kv, prefix="\ud7ff") == ["\ud7ff", "\ud7ffx"]


async def test_list_with_prefix_matching_nothing_is_complete_and_empty(kv: KeyValueStore) -> None:
    await kv.put("a", "v")
    page = await kv.list(prefix="zzz")
    assert (page.keys, page.list_complete, page.cursor) == ([], True, None)


async def test_cursor_pages_over_2500_keys_return_each_once_in_order(kv: KeyValueStore) -> None:
    expected = [f"page:{i:05d}" for i in range(2500)]
    backwards = expected[::-1]
    for start in range(0, len(backwards), 100):  # 100 at once: a call through Miniflare takes milliseconds
        await asyncio.gather(*(kv.put(name, "v") for name in backwards[start : start + 100]))
    await kv.put("other", "v")
    first = await kv.list(prefix="page:")
    assert len(first.keys) == MAX_LIST_LIMIT and not first.list_complete and first.cursor
    assert await all_names(kv, prefix="page:") == expected


async def test_page_exactly_full_is_complete_without_cursor(kv: KeyValueStore) -> None:
    for i in range(3):
        await kv.put(f"k{i}", "v")
    page = await kv.list(limit=3)
    assert (len(page.keys), page.list_complete, page.cursor) == (3, True, None)


async def test_cursor_resumes_after_keys_deleted_between_pages(kv: KeyValueStore) -> None:
    for i in range(6):
        await kv.put(f"k{i}", "v")
    first = await kv.list(limit=2)
    await kv.delete("k2")
    second = await kv.list(limit=2, cursor=first.cursor)
    assert [k.name for k in second.keys] == ["k3", "k4"]


@pytest.mark.parametrize("limit", [0, -1, MAX_LIST_LIMIT + 1])
async def test_list_limit_outside_1_to_1000_is_rejected(kv: KeyValueStore, limit: int) -> None:
    with pytest.raises(ValueError):
        await kv.list(limit=limit)


@pytest.mark.local_only("Cloudflare cursors are opaque; Miniflare lists a garbage cursor as an empty, complete page")
async def test_garbage_cursor_is_rejected(kv: KeyValueStore) -> None:
    with pytest.raises(ValueError):
        await kv.list(cursor="!!not base64!!")


async def test_key_of_512_bytes_is_accepted_and_513_rejected(kv: KeyValueStore) -> None:
    await kv.put("é" * 256, "ok")  # 512 bytes in UTF-8
    assert await kv.get("é" * 256) == "ok"
    with pytest.raises(ValueError):
        await kv.put("é" * 256 + "x", "v")
    with pytest.raises(ValueError):
        await kv.get("k" * 513)


@pytest.mark.parametrize("key", ["", ".", ".."])
async def test_empty_and_dot_keys_are_rejected(kv: KeyValueStore, key: str) -> None:
    with pytest.raises(ValueError):
        await kv.put(key, "v")


async def test_non_string_value_is_rejected(kv: KeyValueStore) -> None:
    with pytest.raises(TypeError):
        await kv.put("k", b"bytes")  # type: ignore[arg-type]

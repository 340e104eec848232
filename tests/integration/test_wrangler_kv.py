"""`WranglerKV`, the KV port over `wrangler kv key … --remote`, against the fake wrangler (one process per call):
missing keys, TTL and metadata flags, values kept off the command line, pages and cursors over a full listing."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from scrapeq.cloudflare.kv import WranglerKV
from scrapeq.cloudflare.wrangler import Wrangler, command_from
from shared.errors import StorageError

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "fake_wrangler.py"
NAMESPACE = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    state = {"logged_in": True, "namespaces": [{"id": NAMESPACE, "title": "t"}], "queues": [], "kv": {}}
    (tmp_path / "state.json").write_text(json.dumps(state))
    (tmp_path / "calls.jsonl").write_text("")
    return tmp_path


@pytest.fixture
def kv(home: Path) -> WranglerKV:
    environ = {"PATH": "/usr/bin:/bin", "FAKE_WRANGLER_DIR": str(home)}
    command = command_from({"SCRAPEQ_WRANGLER": shlex.join([sys.executable, str(FAKE)])})
    return WranglerKV(Wrangler(command, cwd=home, environ=environ, timeout_s=30), NAMESPACE)


def calls(home: Path) -> list[list[str]]:
    return [json.loads(line)["argv"] for line in (home / "calls.jsonl").read_text().splitlines()]


async def test_values_round_trip_exactly_and_missing_keys_are_none(kv: WranglerKV) -> None:
    value = 'línea 1\n{"json": true}\n\n'  # unicode and trailing newlines survive
    await kv.put("tenant:t1:profile", value)
    assert await kv.get("tenant:t1:profile") == value
    assert await kv.get("tenant:t1:missing") is None
    await kv.delete("tenant:t1:profile")
    assert await kv.get("tenant:t1:profile") is None


async def test_ttl_and_metadata_become_wrangler_flags(kv: WranglerKV, home: Path) -> None:
    await kv.put("k", "v", ttl_s=90.5, metadata={"a": 1})
    [put] = [call for call in calls(home) if call[:3] == ["kv", "key", "put"]]
    assert put[put.index("--ttl") + 1] == "91"
    assert json.loads(put[put.index("--metadata") + 1]) == {"a": 1}
    assert {"--remote", "--path"} <= set(put) and put[put.index("--namespace-id") + 1] == NAMESPACE
    [info] = (await kv.list(prefix="k")).keys
    assert info.metadata == {"a": 1} and info.expiration is not None


async def test_values_never_appear_on_the_command_line(kv: WranglerKV, home: Path) -> None:
    await kv.put("secret", "whsec_do-not-leak")
    assert "whsec_do-not-leak" not in json.dumps(calls(home))


@pytest.mark.parametrize(("key", "ttl_s"), [("", None), ("-rf", None), ("k", 59.0)])
async def test_invalid_keys_and_short_ttls_are_refused_before_wrangler_runs(
    kv: WranglerKV, home: Path, key: str, ttl_s: float | None
) -> None:
    with pytest.raises(ValueError):
        await kv.put(key, "v", ttl_s=ttl_s)
    assert calls(home) == []


async def test_list_pages_with_a_cursor_in_key_order(kv: WranglerKV) -> None:
    for name in ("p:c", "p:a", "p:b", "q:a"):
        await kv.put(name, "x")
    first = await kv.list(prefix="p:", limit=2)
    assert [k.name for k in first.keys] == ["p:a", "p:b"] and not first.list_complete
    second = await kv.list(prefix="p:", limit=2, cursor=first.cursor)
    assert [k.name for k in second.keys] == ["p:c"] and second.list_complete and second.cursor is None


async def test_wrangler_failures_become_storage_errors(kv: WranglerKV, home: Path) -> None:
    state = json.loads((home / "state.json").read_text())
    state["logged_in"] = False
    (home / "state.json").write_text(json.dumps(state))
    with pytest.raises(StorageError, match="not authenticated"):
        await kv.get("k")

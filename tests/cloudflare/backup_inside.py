"""The daily backup's scenario inside Pyodide (run by backup_harness.mjs): cron entry, then restore; stdlib only."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import time
from typing import Any

from scrapeq_backup import controller, env, unknown  # type: ignore[import-not-found]  # the harness's JS objects

from shared import backups, cron, keys
from shared.backends.cloudflare import CloudflareKV
from shared.backends.r2 import CloudflareR2
from shared.ports import KeyValueStore, scan

#: Enough incompressible text that tenant a's backup needs a multipart upload (over one 8 MiB part).
PAGES, PAGE_BYTES = 30, 400_000


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def seed(kv: KeyValueStore, tenant: str, pages: int) -> None:
    """A tenant as `Accounts` writes one (index, profile, a key and its lookup), with a task and pages."""
    key_hash = hashlib.sha256(f"sq_{tenant}".encode()).hexdigest()
    await kv.put(keys.tenant_index(tenant), tenant)
    await kv.put(keys.tenant(tenant), json.dumps({"tenant_id": tenant, "name": "naïve ✓"}))
    await kv.put(keys.api_key(tenant, "k1"), json.dumps({"key_id": "k1", "key_hash": key_hash}))
    await kv.put(keys.api_key_lookup(key_hash), f"{tenant}:k1")
    await kv.put(keys.task(tenant, "t1"), '{"status":"completed"}', metadata={"status": "completed", "n": None})
    rng = random.Random(tenant)
    for seq in range(pages):
        text = base64.b64encode(rng.randbytes(PAGE_BYTES * 3 // 4)).decode()
        await kv.put(keys.page(tenant, "t1", seq), text, ttl_s=3600, metadata={"seq": seq})


async def dump(kv: KeyValueStore) -> dict[str, Any]:
    found = {}
    async for info in scan(kv, ""):
        found[info.name] = [hashlib.sha256((await kv.get(info.name) or "").encode()).hexdigest(), info.metadata]
        found[info.name].append(info.expiration)
    return found


async def run() -> str:
    log = Lines()
    logging.getLogger().addHandler(log)
    logging.getLogger().setLevel(logging.INFO)
    kv, restored_kv, objects = CloudflareKV(env.KV), CloudflareKV(env.RESTORED), CloudflareR2(env.BACKUPS)
    await seed(kv, "tn_a", PAGES)
    await seed(kv, "tn_b", 2)
    seen: dict[str, Any] = {"unknown_cron": repr(await cron.run(unknown, env, retention_days=30))}
    report = await cron.run(controller, env, retention_days=30)
    assert report is not None
    seen["report"] = {
        "day": report.day.isoformat(),
        "backed_up": [[e.tenant_id, e.key, e.records, e.bytes] for e in report.backed_up],
        "failed": report.failed,
        "deleted": report.deleted,
    }
    manifest_key = f"backups/{report.day.isoformat()}/manifest.json"
    size = await objects.size(manifest_key)
    seen["manifest"] = json.loads(await objects.read(manifest_key, 0, size or 0))
    restored = []
    for done in report.backed_up:
        got = await backups.restore_tenant(restored_kv, objects, done.key, clock=time.time)
        restored.append([got.tenant_id, got.imported, got.skipped])
    seen["restored"] = restored
    original, copy = await dump(kv), await dump(restored_kv)
    seen["keys"] = len(original)
    seen["differences"] = sorted(k for k in original.keys() | copy.keys() if not same(original.get(k), copy.get(k)))
    try:
        await backups.restore_tenant(restored_kv, objects, report.backed_up[0].key, clock=time.time)
        seen["again"] = "restored twice"
    except Exception as exc:  # the test reports what it was
        seen["again"] = f"{type(exc).__name__}: {exc}"
    seen["logs"] = log.lines
    return json.dumps(seen)


def same(a: list[Any] | None, b: list[Any] | None) -> bool:
    """Equal value digest and metadata; expirations within a second (TTLs are whole seconds)."""
    if a is None or b is None:
        return a is b
    if a[:2] != b[:2] or (a[2] is None) != (b[2] is None):
        return False
    return a[2] is None or abs(a[2] - b[2]) <= 1

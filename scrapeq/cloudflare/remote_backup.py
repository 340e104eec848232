"""`scrapeq cloudflare backup` and `restore`: the consumer Worker's export and import (`shared.backups`) run from
here against the deployed KV namespace (`wrangler kv`), with local files and, on request, the R2 bucket.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from scrapeq.cloudflare.kv import WranglerKV
from scrapeq.cloudflare.wrangler import Wrangler
from shared import backups, keys
from shared.backends.objects import DirectoryObjects
from shared.errors import BackupError

COMMANDS = ("backup", "restore")
Say = Callable[[str], None]


def add_parsers(actions: argparse._SubParsersAction[argparse.ArgumentParser], *, flags: Callable[..., None]) -> None:
    backup = actions.add_parser(
        "backup", help="export tenants of the remote KV as gzip JSON lines into local files (and the R2 bucket)"
    )
    backup.add_argument("--tenant", help="only this tenant (default: every tenant of the index)")
    backup.add_argument(
        "--out", type=Path, default=Path("backups"), help="directory for backups/{day}/{tenant}.jsonl.gz (./backups)"
    )
    backup.add_argument("--upload", action="store_true", help="also put each file into the BACKUPS bucket")
    flags(backup)
    restore = actions.add_parser("restore", help="import one tenant's backup into the remote KV namespace")
    restore.add_argument("file", help="a backup file, or with --from-r2 its key in the BACKUPS bucket")
    restore.add_argument("--tenant", help="refuse the backup unless it is this tenant's")
    restore.add_argument("--from-r2", action="store_true", help="FILE is an object key in the BACKUPS bucket")
    restore.add_argument("--replace", action="store_true", help="write over a tenant that has data in the namespace")
    flags(restore)


async def backup(
    kv: WranglerKV, out: Path, *, tenant: str | None, bucket: str | None, wrangler: Wrangler, say: Say
) -> list[backups.Exported]:
    """Export `tenant` (or every tenant) under `out` with the Worker's layout; upload each file to `bucket` if set."""
    objects = DirectoryObjects(out)
    if tenant is not None and await kv.get(keys.tenant(tenant)) is None:
        raise BackupError(f"no tenant {tenant!r} in the namespace")
    tenants = [tenant] if tenant is not None else [found async for found in backups.tenant_ids(kv)]
    day = datetime.now(UTC).date()
    done = []
    for name in tenants:
        exported = await backups.export_tenant(kv, objects, backups.backup_key(day, name), name)
        say(f"{name}: {exported.records} records, {exported.bytes} bytes in {objects.path(exported.key)}")
        if bucket is not None:
            await wrangler.r2_object_put(bucket, exported.key, objects.path(exported.key))
            say(f"{name}: uploaded to {bucket}/{exported.key}")
        done.append(exported)
    return done


async def restore(
    kv: WranglerKV,
    source: str,
    *,
    tenant: str | None,
    bucket: str | None,
    replace: bool,
    wrangler: Wrangler,
) -> backups.Restored:
    """Restore one backup file (or, with `bucket`, the object `source` downloaded from it) into `kv`."""
    with tempfile.TemporaryDirectory(prefix="scrapeq-restore-") as scratch:
        if bucket is not None:
            path = Path(scratch) / "backup.jsonl.gz"
            await wrangler.r2_object_get(bucket, source, path)
        else:
            path = Path(source)
            if not path.is_file():
                raise BackupError(f"no backup file {source}")
        objects = DirectoryObjects(path.parent)
        return await backups.restore_tenant(kv, objects, path.name, clock=time.time, tenant_id=tenant, replace=replace)

"""The consumer Worker's Cron Triggers: which work each schedule runs, over the Worker's `KV` and `BACKUPS`
bindings; standard library only (the Pyodide tests run it)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from shared import backups
from shared.backends.cloudflare import CloudflareKV
from shared.backends.jsvalues import is_null, to_py
from shared.backends.r2 import CloudflareR2

log = logging.getLogger(__name__)

#: Each `[triggers] crons` entry of wrangler.consumer.toml and the work it names (a test keeps them equal).
DAILY_BACKUP = "17 3 * * *"
SCHEDULES = {DAILY_BACKUP: "backup"}
BACKUPS_BINDING = "BACKUPS"


async def run(controller: Any, env: Any, *, retention_days: int) -> backups.DailyReport | None:
    """The work of one scheduled event (`controller.cron`, `controller.scheduledTime` in epoch ms)."""
    cron = str(to_py(controller.cron))
    work = SCHEDULES.get(cron)
    if work is None:
        log.warning("no work is scheduled for cron %r", cron)
        return None
    scheduled_ms = to_py(getattr(controller, "scheduledTime", None))
    now = datetime.now(UTC) if scheduled_ms is None else datetime.fromtimestamp(float(scheduled_ms) / 1000, UTC)
    bucket = getattr(env, BACKUPS_BINDING, None)
    if is_null(bucket):
        log.error("the %s cron has no %s binding: no backup", cron, BACKUPS_BINDING)
        return None
    log.info("cron %r: daily backup", cron)
    return await backups.run_daily(CloudflareKV(env.KV), CloudflareR2(bucket), now=now, retention_days=retention_days)

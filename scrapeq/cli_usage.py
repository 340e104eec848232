"""`scrapeq usage`: a tenant's usage from the local store, the figures `GET /usage` answers, for operators."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.backends.factory import open_backends
from shared.settings import Settings
from shared.stores.accounts import Accounts
from shared.stores.usage import COUNTERS, report_range, usage_report

if TYPE_CHECKING:
    from scrapeq.cli_cloudflare import Subcommands

COMMAND = "usage"
#: Columns of the text table: short headings for the counters.
_HEADINGS = {
    "tasks_submitted": "submitted",
    "tasks_completed": "completed",
    "tasks_failed": "failed",
    "tasks_cancelled": "cancelled",
    "pages_stored": "stored",
    "pages_failed": "pg_failed",
    "pages_skipped": "skipped",
    "bytes_fetched": "bytes",
    "webhooks_delivered": "wh_ok",
    "webhooks_failed": "wh_failed",
}


def add_parser(sub: Subcommands) -> None:
    cmd = sub.add_parser(COMMAND, help="a tenant's usage by hour or day, from the local store")
    cmd.add_argument("--tenant", required=True, help="the tenant's id")
    cmd.add_argument("--from", dest="start", type=_instant, help="ISO 8601 (default: 7 days / 24 hours before --to)")
    cmd.add_argument("--to", dest="end", type=_instant, help="ISO 8601 (default: now)")
    cmd.add_argument("--granularity", choices=("day", "hour"), default="day")
    cmd.add_argument("--json", action="store_true", help="print the GET /usage answer as one JSON object")


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 instant: {text!r}") from None


async def report(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """The tenant's report; ValueError for an unknown tenant or a range `GET /usage` would refuse."""
    start, end = report_range(args.start, args.end, args.granularity, now=datetime.now(UTC))
    backends = open_backends(settings)
    try:
        if await Accounts(backends.kv).get_tenant(args.tenant) is None:
            raise ValueError(f"no tenant {args.tenant!r}")
        return await usage_report(backends.usage, args.tenant, start=start, end=end, granularity=args.granularity)
    finally:
        await backends.aclose()


def render(data: dict[str, Any]) -> str:
    """A table: one row per bucket (then the totals), the counters as columns, then page errors by code."""
    headings = ["start", *(_HEADINGS[name] for name in COUNTERS)]
    rows = [[b["start"], *(str(b[name]) for name in COUNTERS)] for b in data["buckets"]]
    rows.append(["total", *(str(data["totals"][name]) for name in COUNTERS)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headings)]
    lines = [f"usage of {data['tenant_id']} from {data['from']} to {data['to']} by {data['granularity']}"]
    for row in [headings, *rows]:
        lines.append("  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in
                               enumerate(zip(row, widths, strict=True))))  # fmt: skip
    errors = data["totals"]["errors"]
    lines.append("errors: " + (", ".join(f"{code} {n}" for code, n in errors.items()) or "none"))
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    data = asyncio.run(report(settings, args))
    print(json.dumps(data) if args.json else render(data))
    return 0

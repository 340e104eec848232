"""`scrapeq audit --tenant ID`: a tenant's audit log over the store (local, or Cloudflare's KV), newest first."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.stores.accounts import Accounts, AuditEvent

if TYPE_CHECKING:
    from scrapeq.cli_cloudflare import Subcommands

SUBJECT = "audit"
#: Entries read per listing call; `--limit` caps the total.
PAGE = 200


def add_parser(sub: Subcommands, *, leaf: Callable[[argparse.ArgumentParser], None]) -> None:
    """`audit` under `sub`; `leaf` adds the command's common flags (`--json`, and `--env` on Cloudflare)."""
    cmd = sub.add_parser(SUBJECT, help="a tenant's audit log (keys, secrets, limits, erasures), newest first")
    cmd.set_defaults(subject=SUBJECT)
    cmd.add_argument("--tenant", required=True)
    cmd.add_argument("--limit", type=int, default=50, help="entries at most (default: 50; 0: all)")
    leaf(cmd)


def line(event: AuditEvent) -> str:
    """One entry as text: when, what, which key (or `operator`), then its detail as key=value."""
    at = event.at.isoformat(timespec="seconds").replace("+00:00", "Z")
    detail = " ".join(f"{name}={json.dumps(value)}" for name, value in event.detail.items())
    request = f" request_id={event.request_id}" if event.request_id else ""
    return f"{at}  {event.action:<24} {event.key_id or 'operator':<12} {detail}{request}".rstrip()


async def show(args: argparse.Namespace, accounts: Accounts) -> None:
    await accounts.require_tenant(args.tenant)
    wanted = args.limit if args.limit > 0 else None
    entries: list[AuditEvent] = []
    cursor = None
    while wanted is None or len(entries) < wanted:
        size = PAGE if wanted is None else min(PAGE, wanted - len(entries))
        page = await accounts.audit_page(args.tenant, cursor=cursor, limit=size)
        entries += page.entries
        cursor = page.next_cursor
        if cursor is None:
            break
    if args.json:
        print(json.dumps({"tenant_id": args.tenant, "entries": [e.model_dump(mode="json") for e in entries]}))
    else:
        print("\n".join(line(e) for e in entries) if entries else "(no audit entries)")

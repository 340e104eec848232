"""The `scrapeq` command line: run the service locally, manage tenants and keys, back up and restore data."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from scrapeq import cli_audit, cli_client, cli_cloudflare, cli_usage, logs, requirements
from scrapeq.transfer import export_lines, import_lines
from shared.backends.factory import open_backends
from shared.errors import ApiError, ScrapeqError
from shared.settings import Settings
from shared.stores.accounts import Accounts, ApiKey, Tenant, TenantLimits

if TYPE_CHECKING:
    from scrapeq.cli_cloudflare import Subcommands

DEMO_KB = "kb_demo"


def _no_flags(cmd: argparse.ArgumentParser) -> None:
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scrapeq", description=__doc__)
    parser.add_argument("--data-dir", help="embedded backend directory (SCRAPEQ_DATA_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("dev", "API + consumer in one process; creates a demo tenant and key on an empty data dir"),
        ("serve", "the API (producer) only"),
        ("worker", "the consumer only"),
    ):
        cmd = sub.add_parser(name, help=text)
        if name != "worker":
            cmd.add_argument("--host", help="listen address (SCRAPEQ_HOST)")
            cmd.add_argument("--port", type=int, help="listen port (SCRAPEQ_PORT)")

    add_account_commands(sub)

    export = sub.add_parser("export", help="write all KV data as JSON lines")
    export.add_argument("--output", "-o", help="file (default: stdout)")
    _json_flag(export)
    imp = sub.add_parser("import", help="restore JSON lines written by export")
    imp.add_argument("--input", "-i", help="file (default: stdin)")
    _json_flag(imp)
    cli_cloudflare.add_parser(sub, account_commands=add_account_commands)
    cli_client.add_parser(sub)
    cli_usage.add_parser(sub)
    return parser


def add_account_commands(sub: Subcommands, *, flags: Callable[[argparse.ArgumentParser], None] = _no_flags) -> None:
    """`tenant …`, `key …` and `audit` under `sub`; `flags` adds options to each of them (`--env` on Cloudflare)."""
    tenant_cmd = sub.add_parser("tenant", help="tenants")
    tenant_cmd.set_defaults(subject="tenant")
    tenant = tenant_cmd.add_subparsers(dest="action", required=True)
    create = tenant.add_parser("create", help="create a tenant; prints its id and webhook secret")
    create.add_argument("name")
    create.add_argument("--kb", action="append", required=True, help="a knowledge base (repeatable)")
    create.add_argument("--allowed-domain", action="append", help="restrict crawls to this domain (repeatable)")
    _leaf(flags, create)
    _leaf(flags, tenant.add_parser("list", help="list tenants"))
    update = tenant.add_parser("update", help="set a tenant's own rate limit and quotas (the rest keep theirs)")
    update.add_argument("--tenant", required=True)
    update.add_argument("--rate-limit-per-s", type=float, help="requests per second, per key and for the tenant")
    update.add_argument("--rate-limit-burst", type=int, help="requests at once (default: 5 s of the rate)")
    update.add_argument("--max-concurrent-tasks", type=int, help="tasks queued or running at once (0: no quota)")
    update.add_argument("--max-pages-per-day", type=int, help="sum of `limit` of a UTC day's tasks (0: no quota)")
    update.add_argument("--reset", action="store_true", help="first restore the service defaults for every limit")
    _leaf(flags, update)
    rotate = tenant.add_parser("rotate-secret", help="new webhook secret; deliveries carry both during the overlap")
    rotate.add_argument("--tenant", required=True)
    rotate.add_argument("--overlap-s", type=float, default=24 * 3600, help="seconds the old secret keeps signing")
    _leaf(flags, rotate)

    key_cmd = sub.add_parser("key", help="API keys")
    key_cmd.set_defaults(subject="key")
    key = key_cmd.add_subparsers(dest="action", required=True)
    kcreate = key.add_parser("create", help="create a key; prints it once")
    kcreate.add_argument("--tenant", required=True)
    kcreate.add_argument("--kb", action="append", help="limit the key to this knowledge base (repeatable)")
    _leaf(flags, kcreate)
    klist = key.add_parser("list", help="list a tenant's keys (never the keys themselves)")
    klist.add_argument("--tenant", required=True)
    klist.add_argument("--prefix", default="", help="only keys whose display prefix starts with this")
    _leaf(flags, klist)
    for action, text in (
        ("revoke", "revoke a key at once"),
        ("rotate", "new key; the old one works for a grace period"),
    ):
        cmd = key.add_parser(action, help=text)
        cmd.add_argument("--tenant", required=True)
        cmd.add_argument("key_id")
        if action == "rotate":
            cmd.add_argument("--grace-s", type=float, default=24 * 3600, help="seconds the old key keeps working")
        _leaf(flags, cmd)
    cli_audit.add_parser(sub, leaf=lambda cmd: _leaf(flags, cmd))


def _leaf(flags: Callable[[argparse.ArgumentParser], None], cmd: argparse.ArgumentParser) -> None:
    _json_flag(cmd)
    flags(cmd)


def _json_flag(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k in ("data_dir", "host", "port") if (v := getattr(args, k, None)) is not None}
    return Settings(**overrides)


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, default=str) if getattr(args, "json", False) else text)


def _key_view(record: ApiKey) -> dict[str, Any]:
    return record.model_dump(mode="json", exclude={"key_hash"})


async def _with_accounts(settings: Settings, action: Callable[[Accounts], Awaitable[None]]) -> None:
    backends = open_backends(settings)
    try:
        await action(Accounts(backends.kv))
    finally:
        await backends.aclose()


async def _tenant(args: argparse.Namespace, accounts: Accounts) -> None:
    if args.action == "list":
        tenants = await accounts.list_tenants()
        rows = [
            {
                "tenant_id": t.tenant_id,
                "name": t.name,
                "knowledge_bases": t.knowledge_bases,
                "limits": t.limits.model_dump(exclude_none=True),
            }
            for t in tenants
        ]
        _emit(
            args,
            {"tenants": rows},
            "\n".join(f"{r['tenant_id']}  {r['name']}  {r['knowledge_bases']}" for r in rows),
        )
        return
    if args.action == "update":
        changes = {name: None for name in TenantLimits.model_fields} if args.reset else {}
        changes.update({n: v for n in TenantLimits.model_fields if (v := getattr(args, n, None)) is not None})
        tenant = await accounts.set_limits(args.tenant, changes)
        limits = tenant.limits.model_dump(exclude_none=True)
        text = "\n".join(f"{name}: {value}" for name, value in limits.items()) or "(the service defaults)"
        _emit(args, {"tenant_id": tenant.tenant_id, "limits": limits}, text)
        return
    if args.action == "rotate-secret":
        tenant, secret = await accounts.rotate_webhook_secret(args.tenant, overlap_s=args.overlap_s)
        data = {"tenant_id": tenant.tenant_id, "webhook_secret": secret, "overlap_s": args.overlap_s}
        _emit(args, data, f"webhook_secret: {secret}\n(the previous secret keeps signing for {args.overlap_s:g} s)")
        return
    tenant = await accounts.create_tenant(args.name, args.kb, allowed_domains=args.allowed_domain)
    secret = tenant.webhook_secrets[0].secret
    data = {
        "tenant_id": tenant.tenant_id,
        "name": tenant.name,
        "knowledge_bases": tenant.knowledge_bases,
        "webhook_secret": secret,
    }
    _emit(args, data, f"tenant_id:      {tenant.tenant_id}\nwebhook_secret: {secret}")


async def _key(args: argparse.Namespace, accounts: Accounts) -> None:
    if args.action == "list":
        records = await accounts.list_keys(args.tenant, prefix=args.prefix)
        lines = [f"{r.key_id}  {r.prefix}…{r.last4}  {'revoked' if r.revoked_at else 'active'}" for r in records]
        _emit(args, {"keys": [_key_view(r) for r in records]}, "\n".join(lines))
    elif args.action == "revoke":
        record = await accounts.revoke_key(args.tenant, args.key_id)
        _emit(args, _key_view(record), f"revoked {record.key_id}")
    else:
        if args.action == "create":
            record, api_key = await accounts.create_key(args.tenant, args.kb)
        else:
            record, api_key = await accounts.rotate_key(args.tenant, args.key_id, grace_s=args.grace_s)
        data = {"key_id": record.key_id, "api_key": api_key, "tenant_id": record.tenant_id}
        _emit(
            args,
            data,
            f"key_id:  {record.key_id}\napi_key: {api_key}\n(shown once: it is stored only as a hash)",
        )


async def _transfer(args: argparse.Namespace, settings: Settings) -> None:
    backends = open_backends(settings)
    try:
        if args.command == "export":
            if args.json and not args.output:
                raise ValueError("export --json needs --output: stdout carries the summary object")
            out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
            exported = 0
            try:
                async for line in export_lines(backends.kv):
                    out.write(line + "\n")
                    exported += 1
            finally:
                if out is not sys.stdout:
                    out.close()
            if args.output:
                _emit(args, {"exported": exported, "output": args.output}, f"exported {exported} keys")
            return
        source = open(args.input, encoding="utf-8") if args.input else sys.stdin
        with source:
            imported, skipped = await import_lines(backends.kv, source, clock=time.time)
        _emit(
            args,
            {"imported": imported, "skipped_expired": skipped},
            f"imported {imported}, skipped {skipped} expired",
        )
    finally:
        await backends.aclose()


async def ensure_demo(settings: Settings) -> tuple[Tenant, str] | None:
    """On an empty data dir, a demo tenant with one knowledge base and a key (returned once)."""
    backends = open_backends(settings)
    try:
        accounts = Accounts(backends.kv)
        if await accounts.list_tenants():
            return None
        tenant = await accounts.create_tenant("demo", [DEMO_KB])
        _, api_key = await accounts.create_key(tenant.tenant_id)
        return tenant, api_key
    finally:
        await backends.aclose()


def _print_demo(settings: Settings, demo: tuple[Tenant, str] | None) -> None:
    base = f"http://{settings.host}:{settings.port}"
    if demo is None:
        print(f"scrapeq dev on {base} (data in {settings.data_dir}); create a key with `scrapeq key create`.")
        return
    tenant, api_key = demo
    print(
        f"""
scrapeq dev: created a demo tenant {tenant.tenant_id} (knowledge base {DEMO_KB}) and an API key.
The key is shown only now (stored as a hash):

  export SCRAPEQ_API_KEY={api_key} SCRAPEQ_API_URL={base}

  curl -s -X POST {base}/scrape -H "Authorization: Bearer $SCRAPEQ_API_KEY" \\
       -H 'Content-Type: application/json' \\
       -d '{{"url": "https://example.com/", "knowledge_base_id": "{DEMO_KB}", "limit": 5}}'
  curl -s {base}/tasks/<task_id> -H "Authorization: Bearer $SCRAPEQ_API_KEY"
  curl -s {base}/tasks/<task_id>/pages -H "Authorization: Bearer $SCRAPEQ_API_KEY"

Or with the command line (in another shell, after the export above):

  scrapeq crawl https://example.com/ --kb {DEMO_KB} --limit 5 --wait --out pages/

API docs: {base}/docs
""",
        flush=True,
    )


def _run(args: argparse.Namespace, settings: Settings) -> None:
    requirements.check(args.command, settings)  # before anything starts: a missing package is one clear line
    from scrapeq.processes import serve  # imports uvicorn, which the Workers never load

    logs.configure(settings.log_level, settings.log_format)
    if args.command == "dev":
        _print_demo(settings, asyncio.run(ensure_demo(settings)))
    asyncio.run(serve(settings, api=args.command != "worker", consumer=args.command != "serve"))


def _account_command(args: argparse.Namespace) -> Callable[[Accounts], Awaitable[None]]:
    """The `tenant …` or `key …` command of `args`, to run over any store's accounts (local or Cloudflare)."""
    commands = {"tenant": _tenant, "key": _key, cli_audit.SUBJECT: cli_audit.show}
    return lambda accounts: commands[args.subject](args, accounts)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in cli_client.COMMANDS:
            return cli_client.run(args)
        if args.command == "cloudflare":
            return cli_cloudflare.run(args, account_command=_account_command(args))
        settings = _settings(args)
        if args.command == cli_usage.COMMAND:
            return cli_usage.run(args, settings)
        if args.command in ("dev", "serve", "worker"):
            _run(args, settings)
        elif args.command in ("export", "import"):
            asyncio.run(_transfer(args, settings))
        else:
            asyncio.run(_with_accounts(settings, _account_command(args)))
    except (ScrapeqError, ValueError, ValidationError, OSError) as exc:
        message = exc.detail if isinstance(exc, ApiError) else str(exc)
        print(f"scrapeq: error: {message}", file=sys.stderr)
        return 2
    return 0

"""`scrapeq cloudflare …`: build the Worker bundles, set up and verify an account, and manage tenants and keys
in a deployed KV namespace. The work is done in `scrapeq.cloudflare`; this module parses and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from scrapeq.cloudflare import bundle, provision, remote_backup
from scrapeq.cloudflare.kv import WranglerKV
from scrapeq.cloudflare.wrangler import ENV_VAR, Wrangler, command_from
from shared.stores.accounts import Accounts

if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]  # argparse has no public name for it

AccountCommands = Callable[..., None]

say = functools.partial(print, flush=True)


def add_parser(sub: Subcommands, *, account_commands: AccountCommands) -> None:
    cloudflare = sub.add_parser(
        "cloudflare",
        help="deploy to Cloudflare: bundles, setup, verify, tenants and keys in the remote KV",
        description=(
            f"Runs wrangler as `npx --no-install wrangler`, or as the command line in {ENV_VAR}, in "
            f"{bundle.PROJECT_DIR}/ under --root (the directory of the wrangler configs)."
        ),
    )
    cloudflare.add_argument(
        "--root",
        type=Path,
        default=None,
        help=f"repository root; the wrangler configs are in its {bundle.PROJECT_DIR}/ (default: current dir)",
    )
    actions = cloudflare.add_subparsers(dest="cloudflare_command", required=True)
    build = actions.add_parser("bundle", help="build each Worker's module root (wrangler's [build] also does)")
    build.add_argument("--out", type=Path, help=f"parent dir of the module roots (default: {bundle.BUILD_DIR})")
    _env_flag(actions.add_parser("setup", help="create the KV namespace and queues if missing; write the ids"))
    _env_flag(actions.add_parser("verify", help="check login, ids, namespaces, queues and dry-run deploys"))
    remote_backup.add_parsers(actions, flags=_env_flag)
    account_commands(actions, flags=_env_flag)


def _env_flag(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--env", choices=["staging"], help="the wrangler environment (default: production)")


def run(args: argparse.Namespace, *, account_command: Callable[[Accounts], Awaitable[None]]) -> int:
    root = (args.root or Path.cwd()).resolve()
    if args.cloudflare_command == "bundle":
        for worker in bundle.WORKERS.values():
            out = args.out / worker.name if args.out else None
            built = bundle.build(root, worker, out=out)
            say(f"{worker.name}: {len(built.modules)} modules in {built.module_root} (main: {bundle.ENTRY})")
        return 0
    project = provision.Project(root)
    wrangler = Wrangler(command_from(os.environ), cwd=project.workers_dir)
    if args.cloudflare_command == "setup":
        provision.setup(project, wrangler, args.env, say=say)
        say('done: next `scrapeq cloudflare verify`, then deploy (README, "Deploying to Cloudflare")')
        return 0
    if args.cloudflare_command == "verify":
        failed = 0
        for check in provision.verify(project, wrangler, args.env):
            detail = f": {check.detail}" if not check.ok and check.detail else ""
            say(f"{'✓' if check.ok else '✗'} {check.what}{detail}")
            failed += not check.ok
        say("all checks passed" if not failed else f"{failed} check(s) failed")
        return 0 if not failed else 1
    wrangler.whoami()  # a clear "not logged in" before the first KV call
    if args.cloudflare_command in remote_backup.COMMANDS:
        return _backup_command(args, project, wrangler)
    accounts = Accounts(WranglerKV(wrangler, project.kv_id(args.env)))

    async def remote() -> None:
        await account_command(accounts)

    asyncio.run(remote())
    return 0


def _backup_command(args: argparse.Namespace, project: provision.Project, wrangler: Wrangler) -> int:
    kv = WranglerKV(wrangler, project.kv_id(args.env))
    if args.cloudflare_command == "backup":
        bucket = project.backups_bucket(args.env) if args.upload else None
        run = remote_backup.backup(kv, args.out, tenant=args.tenant, bucket=bucket, wrangler=wrangler, say=say)
        say(f"backed up {len(asyncio.run(run))} tenant(s)")
        return 0
    bucket = project.backups_bucket(args.env) if args.from_r2 else None
    restored = asyncio.run(
        remote_backup.restore(kv, args.file, tenant=args.tenant, bucket=bucket, replace=args.replace, wrangler=wrangler)
    )
    say(f"restored tenant {restored.tenant_id}: {restored.imported} records ({restored.skipped} already expired)")
    return 0

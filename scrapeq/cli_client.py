"""`scrapeq crawl`, `tasks`, `task`, `pages`, `cancel` and `mcp`: the commands that use a running service's API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import scrapeq.page_files as page_files
import scrapeq.requirements as requirements
import scrapeq.watch as watch
from scrapeq.client.calls import RetryPolicy
from scrapeq.client.exceptions import APIConnectionError, APIError
from scrapeq.client.sync import Client
from shared.models import TaskPublic, TaskStatus
from shared.settings import Settings

if TYPE_CHECKING:
    from scrapeq.cli_cloudflare import Subcommands

COMMANDS = ("crawl", "tasks", "task", "pages", "cancel", "mcp")

#: Exit codes of these commands (README "Command line").
OK = 0
TASK_DID_NOT_COMPLETE = 1  # the task ended failed or cancelled, or --timeout passed first
REFUSED = 2  # bad arguments, or the API refused the call (401, 403, 404, 422, …): `scrapeq: error: …`
UNREACHABLE = 3  # the service could not be reached (after the SDK's retries)
INTERRUPTED = 130  # Ctrl-C while following a task: the task keeps running


#: Someone is waiting at a prompt: 429/503 and an unreachable service are tried again for a few seconds only.
CLI_RETRY = RetryPolicy(max_retries=3, max_wait_s=10.0, budget_s=15.0)


def _connection(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--api-url", help="the service (SCRAPEQ_API_URL; default http://127.0.0.1:8000)")
    cmd.add_argument("--api-key", help="an API key (SCRAPEQ_API_KEY)")


def _json(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--json", action="store_true", help="print one JSON object on stdout (no progress)")


def add_parser(sub: Subcommands) -> None:
    crawl = sub.add_parser("crawl", help="submit a crawl to the service; --wait follows it with a progress bar")
    crawl.add_argument("url")
    crawl.add_argument("--kb", required=True, help="the knowledge base to crawl into")
    crawl.add_argument("--limit", type=int, help="pages to store at most (default 1: the start page only)")
    crawl.add_argument("--max-depth", type=int, help="links to follow from the start page")
    crawl.add_argument("--format", action="append", dest="formats", help="markdown, text, html, links, metadata")
    crawl.add_argument("--include-path", action="append", dest="include_paths", help="path glob to keep")
    crawl.add_argument("--exclude-path", action="append", dest="exclude_paths", help="path glob to leave out")
    crawl.add_argument("--max-age", type=float, help="seconds a stored page is fresh enough to reuse")
    crawl.add_argument("--idempotency-key", help="retrying with the same key never makes a second task")
    crawl.add_argument("--wait", action="store_true", help="follow the task until it ends")
    crawl.add_argument("--timeout", type=float, help="with --wait: stop following after this many seconds")
    crawl.add_argument("--out", help="write the pages once the task ends: a directory, or a FILE.jsonl")
    _json(crawl)
    _connection(crawl)

    tasks = sub.add_parser("tasks", help="the tenant's tasks, newest first")
    tasks.add_argument("--kb", help="only this knowledge base's")
    tasks.add_argument("--status", choices=[s.value for s in TaskStatus])
    tasks.add_argument("--limit", type=int, default=20)
    _json(tasks)
    _connection(tasks)

    task = sub.add_parser("task", help="one task: status, progress, changes, error")
    task.add_argument("task_id")
    task.add_argument("--wait", action="store_true", help="follow the task until it ends")
    task.add_argument("--timeout", type=float, help="with --wait: stop following after this many seconds")
    _json(task)
    _connection(task)

    pages = sub.add_parser("pages", help="a task's pages: list them, or write them with --out")
    pages.add_argument("task_id")
    pages.add_argument("--out", help="a directory (one markdown file per page) or a FILE.jsonl")
    _json(pages)
    _connection(pages)

    cancel = sub.add_parser("cancel", help="cancel a queued or running task")
    cancel.add_argument("task_id")
    _json(cancel)
    _connection(cancel)

    mcp = sub.add_parser("mcp", help="an MCP server on stdio for agents, over this service's API")
    _connection(mcp)


def _task_view(task: TaskPublic) -> dict[str, Any]:
    return task.model_dump(mode="json")


def _task_text(task: TaskPublic) -> str:
    lines = [
        f"task_id:        {task.task_id}",
        f"status:         {task.status.value}" + (" (cancel requested)" if task.cancel_requested else ""),
        f"url:            {task.url}",
        f"knowledge_base: {task.knowledge_base_id}",
        f"pages:          {watch.counts(task)} (limit {task.limit})",
        f"changes:        {', '.join(f'{k} {v}' for k, v in task.changes.model_dump().items())}",
        f"created_at:     {task.created_at.isoformat()}",
    ]
    if task.finished_at is not None:
        lines.append(f"finished_at:    {task.finished_at.isoformat()}")
    if task.error is not None:
        lines.append(f"error:          {task.error.code}: {task.error.message}")
    return "\n".join(lines)


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, default=str) if args.json else text, flush=True)


def _ended(task: TaskPublic) -> int:
    return OK if task.status is TaskStatus.COMPLETED else TASK_DID_NOT_COMPLETE


def _follow(client: Client, args: argparse.Namespace, task_id: str) -> TaskPublic:
    display: watch.Display
    if args.json:
        display = watch.Lines(sys.stderr) if sys.stderr.isatty() else _Silent()
    else:
        display = watch.display_for(sys.stdout)
    return watch.follow(client, task_id, display, timeout_s=args.timeout)


class _Silent:
    def update(self, task: TaskPublic) -> None:
        pass

    def close(self, task: TaskPublic) -> None:
        pass


def _write_pages(client: Client, task_id: str, out: str) -> page_files.Written:
    return page_files.write(client.pages(task_id, page_size=100), out)


def _crawl(client: Client, args: argparse.Namespace) -> int:
    fields = {
        "limit": args.limit,
        "max_depth": args.max_depth,
        "formats": args.formats,
        "include_paths": args.include_paths,
        "exclude_paths": args.exclude_paths,
        "max_age": args.max_age,
    }
    accepted = client.submit(args.url, knowledge_base_id=args.kb, idempotency_key=args.idempotency_key, **fields)
    args.task_id = accepted.task_id  # for the Ctrl-C hint
    if not args.wait and not args.out:
        text = (
            f"task_id: {accepted.task_id} ({accepted.status.value})\nfollow it: scrapeq task {accepted.task_id} --wait"
        )
        _emit(args, accepted.model_dump(mode="json"), text)
        return OK
    if not args.json:
        print(f"task_id: {accepted.task_id}", flush=True)
    task = _follow(client, args, accepted.task_id)
    data = _task_view(task)
    text = ""
    if args.out:
        written = _write_pages(client, task.task_id, args.out)
        data["written"] = {"out": args.out, "pages": written.pages, "without_content": written.without_content}
        text = f"wrote {written.pages} pages to {args.out}"
    if args.json:
        _emit(args, data, "")
    elif text:
        print(text, flush=True)
    return _ended(task)


def _tasks(client: Client, args: argparse.Namespace) -> int:
    listed = client.tasks(knowledge_base_id=args.kb, status=args.status, limit=args.limit)
    rows = [
        f"{t.task_id}  {t.status.value:<9}  {t.knowledge_base_id}  {watch.counts(t)}  {t.url}" for t in listed.tasks
    ]
    data = {"tasks": [_task_view(t) for t in listed.tasks], "next_cursor": listed.next_cursor}
    _emit(args, data, "\n".join(rows) or "(no tasks)")
    return OK


def _task(client: Client, args: argparse.Namespace) -> int:
    if args.wait:
        task = _follow(client, args, args.task_id)
        if args.json:
            _emit(args, _task_view(task), "")
        return _ended(task)
    task = client.get(args.task_id)
    _emit(args, _task_view(task), _task_text(task))
    return OK


def _pages(client: Client, args: argparse.Namespace) -> int:
    if args.out:
        written = _write_pages(client, args.task_id, args.out)
        data = {"out": args.out, "pages": written.pages, "without_content": written.without_content}
        _emit(args, data, f"wrote {written.pages} pages to {args.out}")
        return OK
    listed = list(client.pages(args.task_id, page_size=100))
    rows = []
    for seq, page in enumerate(listed):
        outcome = page.error.code if page.error else str(page.status_code)
        rows.append(f"{seq:5d}  {outcome:<12}  {page.url}  {json.dumps(page.title or '')}")
    summary = [{"url": p.url, "title": p.title, "status_code": p.status_code, "error": p.error} for p in listed]
    _emit(args, {"task_id": args.task_id, "pages": summary}, "\n".join(rows) or "(no pages)")
    return OK


def _cancel(client: Client, args: argparse.Namespace) -> int:
    task = client.cancel(args.task_id)
    _emit(args, _task_view(task), f"task {task.task_id}: {task.status.value}, cancel requested")
    return OK


def _problem(exc: APIError) -> str:
    fields = "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg', '')}" for e in exc.errors)
    return f"{exc.status} {exc.code}: {exc.detail}" + (f" ({fields})" if fields else "")


def run(args: argparse.Namespace) -> int:
    requirements.check(args.command, Settings())
    if args.command == "mcp":
        from scrapeq.mcp_server import serve  # the MCP SDK loads only for this command

        serve(args.api_url, args.api_key)
        return OK
    commands: dict[str, Callable[[Client, argparse.Namespace], int]] = {
        "crawl": _crawl,
        "tasks": _tasks,
        "task": _task,
        "pages": _pages,
        "cancel": _cancel,
    }
    try:
        with Client(args.api_url, args.api_key, retry=CLI_RETRY) as client:
            return commands[args.command](client, args)
    except KeyboardInterrupt:
        task_id = getattr(args, "task_id", None) or "<task_id>"
        print(f"\nstopped following; the task keeps running. Cancel it: scrapeq cancel {task_id}", file=sys.stderr)
        return INTERRUPTED
    except TimeoutError as exc:
        print(f"scrapeq: {exc}; it keeps running", file=sys.stderr)
        return TASK_DID_NOT_COMPLETE
    except APIConnectionError as exc:
        print(f"scrapeq: error: cannot reach the service: {exc.detail}", file=sys.stderr)
        return UNREACHABLE
    except APIError as exc:
        print(f"scrapeq: error: {_problem(exc)}", file=sys.stderr)
        return REFUSED
    except (OSError, ValueError) as exc:
        print(f"scrapeq: error: {exc}", file=sys.stderr)
        return REFUSED

"""A task's pages written out: one markdown file per page in a directory, or one JSON line per page in a file."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shared.models import Page

#: Characters kept in a file name; every other run of characters becomes one "-".
_UNSAFE = re.compile(r"[^A-Za-z0-9._]+")
MAX_NAME = 120


@dataclass
class Written:
    pages: int = 0
    #: Pages with no content to write (a failed page, or one whose formats had neither markdown nor text).
    without_content: int = 0


def file_name(seq: int, url: str) -> str:
    """`00012-example.com-docs-intro.md`: the crawl order first (unique, so two URLs never share a file), then
    the URL's host and path reduced to letters, digits, dots and dashes — never a separator, never `..`."""
    parts = urlsplit(url)
    segments = [s for s in re.split(r"[/\\]", unquote(parts.path)) if s not in ("", ".", "..")]
    words = [parts.hostname or "", *segments, parts.query]
    readable = re.sub(r"\.{2,}", ".", _UNSAFE.sub("-", "-".join(w for w in words if w))).strip("-.")
    if readable.lower().endswith((".html", ".htm")):
        readable = readable.rsplit(".", 1)[0]
    return f"{seq:05d}-{readable[:MAX_NAME].rstrip('-.') or 'page'}.md"


def _front_matter(page: Page) -> str:
    # JSON strings are valid YAML scalars: a title with quotes, colons or newlines cannot break the block.
    fields = {"url": page.url, "title": page.title, "status_code": page.status_code, "fetched_at": page.fetched_at}
    lines = [f"{name}: {json.dumps(value, default=str)}" for name, value in fields.items() if value is not None]
    return "---\n" + "\n".join(lines) + "\n---\n\n"


def write_directory(pages: Iterable[Page], directory: Path) -> Written:
    directory.mkdir(parents=True, exist_ok=True)
    root = directory.resolve()
    written = Written()
    for seq, page in enumerate(pages):
        content = page.markdown if page.markdown is not None else page.text
        if page.error is not None or content is None:
            written.without_content += 1
            continue
        target = (root / file_name(seq, page.url)).resolve()
        if target.parent != root:  # file_name cannot make one; this keeps it so
            raise ValueError(f"refusing to write outside {root}: {target}")
        tmp = target.with_name(target.name + ".part")
        tmp.write_text(_front_matter(page) + content, encoding="utf-8")
        os.replace(tmp, target)
        written.pages += 1
    return written


def write_json_lines(pages: Iterable[Page], path: Path) -> Written:
    written = Written()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", encoding="utf-8") as out:
        for page in pages:
            out.write(page.model_dump_json(exclude_none=True) + "\n")
            written.pages += 1
            written.without_content += page.error is not None
    os.replace(tmp, path)
    return written


def write(pages: Iterable[Page], out: str) -> Written:
    """`out` ending in `.jsonl` is a file of JSON lines; anything else is a directory of markdown files."""
    path = Path(out)
    return write_json_lines(pages, path) if path.suffix == ".jsonl" else write_directory(pages, path)

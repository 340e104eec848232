"""Erasure on the embedded SQLite, read off the disk: after `DELETE /knowledge-bases/{kb}` no byte of that
knowledge base's page text is left in any file of the data dir (database and WAL), another knowledge base's
text still is, `scrapeq export` holds none of it, and a crawl of it running at the time stops and stores nothing
more."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
import zlib
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import GENEROUS_LIMITS, Cli, poll_task
from tests.fixtures.versioned import Version, VersionedSite

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def site_of(marker: str, pages: int) -> dict[str, Version]:
    """An index linking `pages` pages; every page long enough to be stored compressed."""
    links = "".join(f'<a href="/p{n}.html">p{n}</a>' for n in range(pages))
    filler = " ".join(f"{marker} word{n}" for n in range(120))
    index = f"<html><body><main><p>{marker} index</p>{links}</main></body></html>"
    served = {"/index.html": Version(index)}
    for n in range(pages):
        body = f"<p>{marker} page {n} body</p><p>{filler}</p>"
        served[f"/p{n}.html"] = Version(f"<html><body><main>{body}</main></body></html>")
    return served


COMPRESSED = re.compile(rb"z1:([A-Za-z0-9+/=]{8,})")


def readable(raw: bytes) -> bytes:
    """The file's bytes, and the text of every compressed page record in them (whole or not)."""
    inflated = []
    for match in COMPRESSED.finditer(raw):
        chunk = match.group(1)
        with contextlib.suppress(ValueError, zlib.error):
            data = base64.b64decode(chunk[: len(chunk) // 4 * 4])
            inflated.append(zlib.decompressobj().decompress(data))
    return raw + b"".join(inflated)


def on_disk(data_dir: Path, needle: str) -> list[str]:
    """The files of the data dir holding `needle` (as UTF-8 bytes), plainly or in a compressed page record."""
    return sorted(p.name for p in data_dir.rglob("*") if p.is_file() and needle.encode() in readable(p.read_bytes()))


def test_an_erased_knowledge_base_leaves_no_text_on_disk(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "data", SCRAPEQ_CANCEL_CHECK_INTERVAL_S="0.2", **GENEROUS_LIMITS)
    tenant = cli.json("tenant", "create", "erase", "--kb", "kb_gone", "--kb", "kb_kept")
    key = str(cli.json("key", "create", "--tenant", str(tenant["tenant_id"]))["api_key"])
    with VersionedSite() as fast, VersionedSite(delay_s=0.5) as slow, VersionedSite() as kept:
        fast.pages = site_of("zebracrossing", 5)
        slow.pages = site_of("quokkaburrow", 60)
        kept.pages = site_of("wombatden", 3)
        try:
            base = cli.start_http("dev", tmp_path / "dev.log")
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:

                def submit(url: str, kb: str, limit: int) -> str:
                    answer = client.post("/scrape", json={"url": url, "knowledge_base_id": kb, "limit": limit})
                    assert answer.status_code == 202, answer.text
                    return str(answer.json()["task_id"])

                for task_id in (
                    submit(fast.url("/index.html"), "kb_gone", 6),
                    submit(kept.url("/index.html"), "kb_kept", 4),
                ):
                    poll_task(client, task_id, lambda t: t["status"] == "completed")
                # A slow crawl of the same knowledge base, running when the erasure comes.
                running_id = submit(slow.url("/index.html"), "kb_gone", 60)
                deadline = time.monotonic() + 30
                while not on_disk(tmp_path / "data", "quokkaburrow page"):
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
                assert on_disk(tmp_path / "data", "zebracrossing")
                erased = client.delete("/knowledge-bases/kb_gone")
                assert erased.status_code == 200, erased.text
                assert client.get(f"/tasks/{running_id}").status_code == 404
                # The running crawl stops at its next cancel check and purges what it stored meanwhile.
                requests_then = sum(slow.requests.values())
                time.sleep(3)
                assert sum(slow.requests.values()) - requests_then <= 4  # pages already in flight at most
                assert client.get("/knowledge-bases/kb_gone/documents").json()["documents"] == []
                assert client.get(f"/tasks/{running_id}/pages").status_code == 404
        finally:
            cli.stop_all()
    assert on_disk(tmp_path / "data", "zebracrossing") == []
    assert on_disk(tmp_path / "data", "quokkaburrow") == []
    assert on_disk(tmp_path / "data", "wombatden")  # another knowledge base of the tenant is untouched
    exported = cli.run("export")
    assert exported.returncode == 0, exported.stderr
    assert "zebracrossing" not in exported.stdout and "quokkaburrow" not in exported.stdout
    assert "wombatden" in exported.stdout
    audit = [json.loads(line) for line in exported.stdout.splitlines() if ":audit:" in line]
    assert any("knowledge_base.erased" in json.dumps(entry) for entry in audit)

"""The `scrapeq` command line as a script uses it: `--json` output, key management, backup and restore, dev."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Cli, free_port, wait_for_health

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_tenant_and_key_commands_print_one_json_object(cli: Cli) -> None:
    tenant = cli.json("tenant", "create", "acme", "--kb", "kb_one", "--kb", "kb_two")
    assert str(tenant["tenant_id"]).startswith("tn_")
    assert str(tenant["webhook_secret"]).startswith("whsec_")
    key = cli.json("key", "create", "--tenant", str(tenant["tenant_id"]), "--kb", "kb_one")
    assert str(key["api_key"]).startswith("sq_")
    listed = cli.json("key", "list", "--tenant", str(tenant["tenant_id"]))
    [record] = listed["keys"]  # type: ignore[misc]
    assert record["key_id"] == key["key_id"]
    assert key["api_key"] not in json.dumps(listed)  # a listing never shows the key
    assert "key_hash" not in record
    rotated = cli.json("key", "rotate", "--tenant", str(tenant["tenant_id"]), str(key["key_id"]), "--grace-s", "60")
    assert rotated["api_key"] != key["api_key"]
    revoked = cli.json("key", "revoke", "--tenant", str(tenant["tenant_id"]), str(rotated["key_id"]))
    assert revoked["revoked_at"] is not None
    assert [t["name"] for t in cli.json("tenant", "list")["tenants"]] == ["acme"]  # type: ignore[index]
    secret = cli.json("tenant", "rotate-secret", "--tenant", str(tenant["tenant_id"]), "--overlap-s", "600")
    assert str(secret["webhook_secret"]).startswith("whsec_")
    assert secret["webhook_secret"] != tenant["webhook_secret"]


def test_tenant_update_sets_and_resets_a_tenants_own_limits(cli: Cli) -> None:
    tenant_id = str(cli.json("tenant", "create", "acme", "--kb", "kb_one")["tenant_id"])
    updated = cli.json(
        "tenant", "update", "--tenant", tenant_id, "--rate-limit-per-s", "5", "--max-pages-per-day", "900"
    )
    assert updated == {"tenant_id": tenant_id, "limits": {"rate_limit_per_s": 5.0, "max_pages_per_day": 900}}
    updated = cli.json("tenant", "update", "--tenant", tenant_id, "--max-concurrent-tasks", "3")
    assert updated["limits"] == {"rate_limit_per_s": 5.0, "max_concurrent_tasks": 3, "max_pages_per_day": 900}
    [listed] = cli.json("tenant", "list")["tenants"]  # type: ignore[misc]
    assert listed["limits"] == updated["limits"]
    assert cli.json("tenant", "update", "--tenant", tenant_id, "--reset")["limits"] == {}
    refused = cli.run("tenant", "update", "--tenant", tenant_id, "--max-concurrent-tasks", "-1")
    assert refused.returncode == 2
    assert "max_concurrent_tasks" in refused.stderr


def test_errors_go_to_stderr_with_a_nonzero_exit(cli: Cli) -> None:
    done = cli.run("key", "create", "--tenant", "tn_missing", "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "no tenant" in done.stderr


def test_export_then_import_restores_every_key(cli: Cli, tmp_path: Path) -> None:
    tenant = cli.json("tenant", "create", "acme", "--kb", "kb_one")
    cli.json("key", "create", "--tenant", str(tenant["tenant_id"]))
    dump = tmp_path / "backup.jsonl"
    summary = cli.json("export", "-o", str(dump))
    lines = dump.read_text().splitlines()
    assert summary["exported"] == len(lines) > 3
    restored = Cli(tmp_path / "restored")
    assert restored.json("import", "-i", str(dump))["imported"] == len(lines)
    again = restored.run("export")
    assert again.returncode == 0
    assert again.stdout.splitlines() == lines


def test_dev_creates_a_demo_key_that_works_and_prints_curl_lines(tmp_path: Path) -> None:
    port = free_port()
    cli = Cli(tmp_path / "data", SCRAPEQ_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "scrapeq", "dev"], env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base)
        assert proc.stdout is not None
        banner = b""
        deadline = time.monotonic() + 10
        while b"API docs" not in banner and time.monotonic() < deadline:
            banner += proc.stdout.readline()
        text = banner.decode()
        api_key = text.split("SCRAPEQ_API_KEY=", 1)[1].split()[0]
        assert "curl -s -X POST" in text and f"{base}/scrape" in text
        answer = httpx.get(f"{base}/tasks", headers={"Authorization": f"Bearer {api_key}"})
        assert answer.status_code == 200
    finally:
        proc.terminate()
        code = proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0  # SIGTERM stops API and consumer cleanly

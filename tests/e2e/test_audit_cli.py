"""`scrapeq audit --tenant ID`: the tenant's audit log from the local store, newest first, as text or JSON, with
no secret in it; an unknown tenant is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Cli

pytestmark = [pytest.mark.e2e]


def test_scrapeq_audit_lists_a_tenants_changes_newest_first_without_secrets(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "data")
    tenant = cli.json("tenant", "create", "audited", "--kb", "kb_a")
    tenant_id = str(tenant["tenant_id"])
    other = str(cli.json("tenant", "create", "other", "--kb", "kb_o")["tenant_id"])
    key = cli.json("key", "create", "--tenant", tenant_id)
    rotated = cli.json("tenant", "rotate-secret", "--tenant", tenant_id)
    secrets = [str(tenant["webhook_secret"]), str(key["api_key"]), str(rotated["webhook_secret"])]

    listed = cli.json("audit", "--tenant", tenant_id)
    entries = listed["entries"]
    assert isinstance(entries, list)
    assert [e["action"] for e in entries] == ["webhook_secret.rotated", "key.created", "tenant.created"]
    assert {e["tenant_id"] for e in entries} == {tenant_id}
    assert entries[1]["key_id"] == key["key_id"]

    text = cli.run("audit", "--tenant", tenant_id, "--limit", "2")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 2 and "webhook_secret.rotated" in lines[0] and "overlap_s=86400" in lines[0]
    assert "key.created" in lines[1] and str(key["key_id"]) in lines[1]
    for output in (str(listed), text.stdout):
        assert not any(secret in output for secret in secrets)

    assert [e["action"] for e in cli.json("audit", "--tenant", other)["entries"]] == ["tenant.created"]  # type: ignore[union-attr]
    unknown = cli.run("audit", "--tenant", "tn_nosuchtenant")
    assert unknown.returncode == 2 and "tn_nosuchtenant" in unknown.stderr

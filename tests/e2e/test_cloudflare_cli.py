"""`scrapeq cloudflare …` as an operator runs it, over a fake wrangler that records its calls and keeps the
account's state in a file (tests/fixtures/fake_wrangler.py): setup creates only what is missing and edits only
the ids, verify reports a checklist, tenants and keys go to the remote KV as hashes only."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scrapeq.cloudflare.bundle import PROJECT_DIR
from scrapeq.cloudflare.configs import PLACEHOLDER_ID
from scrapeq.cloudflare.wrangler import NOT_LOGGED_IN

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "fixtures" / "fake_wrangler.py"
CONFIGS = ("wrangler.toml", "wrangler.consumer.toml")
PLACEHOLDER_LINE = f'id = "{PLACEHOLDER_ID}"'


class Account:
    """A project dir with copies of both configs where the checkout has them, and the fake wrangler's account
    state and call log."""

    def __init__(self, tmp_path: Path, *, logged_in: bool = True) -> None:
        self.root = tmp_path / "project"
        self.workers_dir = self.root / PROJECT_DIR
        self.workers_dir.mkdir(parents=True)
        for name in CONFIGS:
            shutil.copyfile(ROOT / PROJECT_DIR / name, self.workers_dir / name)
        self.home = tmp_path / "wrangler"
        self.home.mkdir()
        self.save({"logged_in": logged_in, "namespaces": [], "queues": [], "kv": {}})
        (self.home / "calls.jsonl").write_text("")

    def save(self, state: dict[str, Any]) -> None:
        (self.home / "state.json").write_text(json.dumps(state))

    @property
    def state(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.home / "state.json").read_text())
        return loaded

    def calls(self) -> list[list[str]]:
        return [json.loads(line)["argv"] for line in (self.home / "calls.jsonl").read_text().splitlines()]

    def cwds(self) -> list[str]:
        """The directory wrangler ran in, call by call."""
        return [json.loads(line)["cwd"] for line in (self.home / "calls.jsonl").read_text().splitlines()]

    def config(self, name: str) -> str:
        return (self.workers_dir / name).read_text()

    def run(self, *args: str, wrangler: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "FAKE_WRANGLER_DIR": str(self.home),
            "SCRAPEQ_WRANGLER": wrangler or shlex.join([sys.executable, str(FAKE)]),
        }
        return subprocess.run(
            [sys.executable, "-m", "scrapeq", "cloudflare", "--root", str(self.root), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def creations(calls: list[list[str]]) -> list[list[str]]:
    return [call for call in calls if "create" in call]


@pytest.mark.parametrize(
    ("env", "title", "queues", "bucket", "occurrence"),
    [
        ([], "scrapeq-kv", ["scrapeq-jobs", "scrapeq-jobs-dlq"], "scrapeq-backups", 0),
        (
            ["--env", "staging"],
            "scrapeq-kv-staging",
            ["scrapeq-jobs-staging", "scrapeq-jobs-dlq-staging"],
            "scrapeq-backups-staging",
            1,
        ),
    ],
)
def test_setup_creates_what_is_missing_and_writes_only_that_envs_ids(
    tmp_path: Path, env: list[str], title: str, queues: list[str], bucket: str, occurrence: int
) -> None:
    account = Account(tmp_path)
    before = {name: account.config(name) for name in CONFIGS}
    done = account.run("setup", *env)
    assert done.returncode == 0, done.stderr
    [namespace] = account.state["namespaces"]
    assert namespace["title"] == title
    assert account.state["queues"] == queues
    assert creations(account.calls()) == [
        ["kv", "namespace", "create", title],
        ["queues", "create", queues[0]],
        ["queues", "create", queues[1]],
        ["r2", "bucket", "create", bucket],
    ]
    assert account.state["buckets"] == [bucket]
    assert f"R2 bucket {bucket}: created" in done.stdout
    for name in CONFIGS:
        # Exactly one line differs: the env's placeholder id (production's comes first, staging's second).
        old, new = before[name].splitlines(keepends=True), account.config(name).splitlines(keepends=True)
        placeholders = [i for i, line in enumerate(old) if line.strip() == PLACEHOLDER_LINE]
        assert len(old) == len(new) and len(placeholders) == 2
        assert [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b] == [placeholders[occurrence]]
        assert new[placeholders[occurrence]] == f'id = "{namespace["id"]}"\n'
    assert "logged in to Cloudflare as ops@example.com" in done.stdout
    assert f"KV namespace {title}: created" in done.stdout


def test_setup_rerun_creates_nothing_says_exists_and_leaves_configs_alone(tmp_path: Path) -> None:
    account = Account(tmp_path)
    assert account.run("setup").returncode == 0
    configs = {name: account.config(name) for name in CONFIGS}
    first_calls = len(account.calls())
    again = account.run("setup")
    assert again.returncode == 0, again.stderr
    assert creations(account.calls()[first_calls:]) == []
    assert again.stdout.count(": exists") == 4  # the namespace, both queues and the backups bucket
    assert again.stdout.count("already set") == 2
    assert {name: account.config(name) for name in CONFIGS} == configs


def test_setup_adopts_resources_that_already_exist(tmp_path: Path) -> None:
    account = Account(tmp_path)
    existing = "0123456789abcdef0123456789abcdef"
    account.save(
        {
            "logged_in": True,
            "namespaces": [{"id": existing, "title": "scrapeq-kv"}],
            "queues": ["scrapeq-jobs", "scrapeq-jobs-dlq"],
            "kv": {},
            "buckets": ["scrapeq-backups"],
        }
    )
    done = account.run("setup")
    assert done.returncode == 0, done.stderr
    assert creations(account.calls()) == []
    assert all(f'id = "{existing}"' in account.config(name) for name in CONFIGS)


def test_setup_without_login_says_so_and_exits_2_touching_nothing(tmp_path: Path) -> None:
    account = Account(tmp_path, logged_in=False)
    before = {name: account.config(name) for name in CONFIGS}
    done = account.run("setup")
    assert done.returncode == 2
    assert NOT_LOGGED_IN in done.stderr
    assert "npx wrangler login" in done.stderr and "CLOUDFLARE_API_TOKEN" in done.stderr
    assert account.calls() == [["whoami", "--json"]]
    assert {name: account.config(name) for name in CONFIGS} == before


def test_missing_wrangler_is_a_clear_error(tmp_path: Path) -> None:
    done = Account(tmp_path).run("setup", wrangler=str(tmp_path / "no-such-wrangler"))
    assert done.returncode == 2
    assert "cannot run wrangler" in done.stderr and "npm install" in done.stderr


def test_verify_lists_failures_before_setup_and_passes_after(tmp_path: Path) -> None:
    account = Account(tmp_path)
    before = account.run("verify")
    assert before.returncode == 1
    assert "✗ deploy/cloudflare/wrangler.toml: KV namespace id for production is set" in before.stdout
    assert "run `scrapeq cloudflare setup`" in before.stdout
    assert "✓ the two wrangler configs agree" in before.stdout
    assert account.run("setup").returncode == 0
    after = account.run("verify")
    assert after.returncode == 0, after.stdout
    assert "✗" not in after.stdout
    for line in (
        "KV namespace",
        "queue scrapeq-jobs exists",
        "queue scrapeq-jobs-dlq exists",
        "R2 bucket scrapeq-backups exists",
        "dry-run deploy",
    ):
        assert f"✓ {line}" in after.stdout
    dry_runs = [call for call in account.calls() if call[:1] == ["deploy"]]
    # Each -c names a config in the directory wrangler runs in (the fake fails a dry run of a missing config).
    assert [call[call.index("-c") + 1] for call in dry_runs[-2:]] == list(CONFIGS)
    assert all("--dry-run" in call and "--env=" in call for call in dry_runs)
    assert set(account.cwds()) == {str(account.workers_dir)}


def test_verify_without_login_fails_the_login_check(tmp_path: Path) -> None:
    done = Account(tmp_path, logged_in=False).run("verify", "--env", "staging")
    assert done.returncode == 1
    assert f"✗ Cloudflare login: {NOT_LOGGED_IN}" in done.stdout


def test_tenant_and_key_go_to_the_remote_namespace_as_hashes_only(tmp_path: Path) -> None:
    account = Account(tmp_path)
    assert account.run("setup", "--env", "staging").returncode == 0
    created = account.run("tenant", "create", "acme", "--kb", "kb_docs", "--env", "staging", "--json")
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    minted = account.run(
        "key", "create", "--tenant", tenant["tenant_id"], "--kb", "kb_docs", "--env", "staging", "--json"
    )
    assert minted.returncode == 0, minted.stderr
    api_key = json.loads(minted.stdout)["api_key"]

    [namespace] = account.state["namespaces"]
    stored = account.state["kv"][namespace["id"]]
    assert f"apikey:{hashlib.sha256(api_key.encode()).hexdigest()}" in stored
    assert f"tenant:{tenant['tenant_id']}:profile" in stored
    dump = json.dumps(stored)
    assert api_key not in dump  # never the key itself: only its hash, prefix and last four characters
    puts = [call for call in account.calls() if call[:3] == ["kv", "key", "put"]]
    assert puts and all({"--remote", "--path"} <= set(call) for call in puts)
    assert all(call[call.index("--namespace-id") + 1] == namespace["id"] for call in puts)
    argv = json.dumps(account.calls())
    assert api_key not in argv and tenant["webhook_secret"] not in argv  # values travel in files

    listed = account.run("key", "list", "--tenant", tenant["tenant_id"], "--env", "staging", "--json")
    assert [k["key_id"] for k in json.loads(listed.stdout)["keys"]] == [json.loads(minted.stdout)["key_id"]]


def test_tenant_create_before_setup_asks_for_setup(tmp_path: Path) -> None:
    done = Account(tmp_path).run("tenant", "create", "acme", "--kb", "kb_docs")
    assert done.returncode == 2
    assert "run `scrapeq cloudflare setup`" in done.stderr


def test_bundle_command_builds_both_module_roots(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scrapeq", "cloudflare", "bundle", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for worker in ("producer", "consumer"):
        assert (tmp_path / worker / "entry.py").is_file()
        assert (tmp_path / worker / worker / "worker.py").is_file()
        assert (tmp_path / worker / "shared" / "models.py").is_file()
        assert f"{worker}: " in done.stdout


def test_verify_reports_a_missing_backups_bucket(tmp_path: Path) -> None:
    account = Account(tmp_path)
    assert account.run("setup").returncode == 0
    account.save({**account.state, "buckets": []})
    done = account.run("verify")
    assert done.returncode == 1
    assert "✗ R2 bucket scrapeq-backups exists: run `scrapeq cloudflare setup`" in done.stdout


def test_backup_and_restore_go_through_the_remote_kv_and_the_bucket(tmp_path: Path) -> None:
    account = Account(tmp_path)
    assert account.run("setup").returncode == 0
    tenant = json.loads(account.run("tenant", "create", "acme", "--kb", "kb_docs", "--json").stdout)["tenant_id"]
    minted = account.run("key", "create", "--tenant", tenant, "--json")
    assert minted.returncode == 0, minted.stderr
    other = json.loads(account.run("tenant", "create", "bolt", "--kb", "kb_b", "--json").stdout)["tenant_id"]
    [namespace] = account.state["namespaces"]
    original = account.state["kv"][namespace["id"]]

    out = tmp_path / "out"
    done = account.run("backup", "--tenant", tenant, "--out", str(out), "--upload")
    assert done.returncode == 0, done.stderr
    [file] = list(out.glob(f"backups/*/{tenant}.jsonl.gz"))
    key = file.relative_to(out).as_posix()
    assert base64.b64decode(account.state["r2"]["scrapeq-backups"][key]) == file.read_bytes()
    lines = [json.loads(line) for line in gzip.decompress(file.read_bytes()).decode().splitlines()]
    assert lines and not [line for line in lines if other in line["key"] or other in line["value"]]

    refused = account.run("restore", str(file))
    assert refused.returncode == 2 and "already has data" in refused.stderr

    # An empty namespace: the tenant comes back from the bucket with every key, and only its keys.
    account.save({**account.state, "kv": {}})
    restored = account.run("restore", key, "--from-r2", "--tenant", tenant)
    assert restored.returncode == 0, restored.stderr
    assert f"restored tenant {tenant}: {len(lines)} records" in restored.stdout
    mine = {name: entry for name, entry in original.items() if other not in name and other not in entry["value"]}
    assert account.state["kv"][namespace["id"]] == mine

    wrong = account.run("restore", str(file), "--tenant", other, "--replace")
    assert wrong.returncode == 2 and f"a backup of tenant {tenant}, not {other}" in wrong.stderr
    file.write_bytes(file.read_bytes()[:-20])
    truncated = account.run("restore", str(file), "--replace")
    assert truncated.returncode == 2 and "truncated" in truncated.stderr

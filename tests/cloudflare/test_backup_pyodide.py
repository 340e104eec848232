"""Backups on Cloudflare: the consumer Worker's cron entry runs in Pyodide over Miniflare's R2 bucket and KV, backs
up every tenant (a large one in equal multipart parts), sweeps old days, and a restore into an empty namespace
equals the original."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared import cron
from shared.backends.r2 import PART_BYTES
from tests.cloudflare.client import missing_requirement

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(bool(missing_requirement()), reason=str(missing_requirement())),
]


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    argv = ["node", "tests/cloudflare/backup_harness.mjs"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_it_runs_in_pyodide_and_the_cron_dispatches_on_its_schedule(result: dict[str, Any]) -> None:
    assert result["platform"] == "emscripten" and result["python"].startswith("3.14")
    assert result["inside"]["unknown_cron"] == "None"  # another schedule runs no backup
    assert cron.SCHEDULES == {"17 3 * * *": "backup"}
    logs = "\n".join(result["inside"]["logs"])
    assert "no work is scheduled for cron '0 0 * * *'" in logs
    assert "backed up" in logs and "daily backup of 2026-12-01: 2 tenants, 0 failed, 1 old objects deleted" in logs


def test_every_tenant_is_backed_up_under_the_day_and_old_days_are_swept(result: dict[str, Any]) -> None:
    report = result["inside"]["report"]
    assert report["day"] == "2026-12-01" and report["failed"] == []
    assert [(t, k) for t, k, _, _ in report["backed_up"]] == [
        ("tn_a", "backups/2026-12-01/tn_a.jsonl.gz"),
        ("tn_b", "backups/2026-12-01/tn_b.jsonl.gz"),
    ]
    assert report["deleted"] == ["backups/2026-10-01/tn_old.jsonl.gz"]
    listed = dict(result["listed"])
    assert sorted(listed) == [
        "backups/2026-11-20/tn_old.jsonl.gz",
        "backups/2026-12-01/manifest.json",
        "backups/2026-12-01/tn_a.jsonl.gz",
        "backups/2026-12-01/tn_b.jsonl.gz",
    ]
    for tenant, key, records, size in report["backed_up"]:
        assert listed[key] == size and records == (35 if tenant == "tn_a" else 7)
    manifest = result["inside"]["manifest"]
    assert [t["key"] for t in manifest["tenants"]] == [k for _, k, _, _ in report["backed_up"]]


def test_a_large_backup_goes_up_in_equal_parts_and_a_small_one_in_one_put(result: dict[str, Any]) -> None:
    calls = result["calls"]
    parts = [
        size for kind, key, *rest in calls if kind == "part" and key.endswith("tn_a.jsonl.gz") for size in rest[1:]
    ]
    assert len(parts) >= 2 and set(parts[:-1]) == {PART_BYTES} and 0 < parts[-1] <= PART_BYTES
    assert ["complete", "backups/2026-12-01/tn_a.jsonl.gz", len(parts)] in calls
    puts = [key for kind, key, *_ in calls if kind == "put"]
    assert puts == ["backups/2026-12-01/tn_b.jsonl.gz", "backups/2026-12-01/manifest.json"]


def test_the_restore_into_an_empty_namespace_equals_the_original(result: dict[str, Any]) -> None:
    inside = result["inside"]
    assert inside["restored"] == [["tn_a", 35, 0], ["tn_b", 7, 0]]
    assert inside["keys"] == 42 and inside["differences"] == []
    assert inside["again"].startswith("BackupError: tenant tn_a already has data")

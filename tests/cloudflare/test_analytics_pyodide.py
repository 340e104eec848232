"""Operator metrics on Cloudflare: the Analytics Engine recorder in Pyodide writes the data points it documents,
as plain JS Objects a real dataset binding (Miniflare's) accepts, and never raises."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cloudflare.client import missing_requirement

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(bool(missing_requirement()), reason=str(missing_requirement())),
]


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    argv = ["node", "tests/cloudflare/analytics_harness.mjs"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_it_runs_in_pyodide_and_installs_once_per_isolate(result: dict[str, Any]) -> None:
    assert result["platform"] == "emscripten" and result["python"].startswith("3.14")
    assert result["inside"]["installed"] == "AnalyticsEngineRecorder"
    assert result["inside"]["again_same"] is True
    assert result["inside"]["without_binding"] == "NullRecorder"  # a Worker without the binding records nothing
    assert result["inside"]["broken_binding"] == "did not raise"


def test_every_event_is_one_documented_data_point(result: dict[str, Any]) -> None:
    points = [(p["blobs"], p["doubles"], p["indexes"]) for p in result["points"]]
    assert points[:3] == [
        (["request", "/tasks/{task_id}", "GET", "200"], [1, 0.0125], ["-"]),
        (["task", "submitted"], [1], ["tn_a"]),
        (["slice"], [1, 1.5], ["tn_a"]),
    ]
    # Pages and bytes are summed until the slice ends, one point per tenant, outcome and code.
    assert sorted(points[3:8]) == sorted(
        [
            (["page", "stored", ""], [2], ["tn_a"]),
            (["page", "failed", "http_status"], [1], ["tn_a"]),
            (["page", "skipped", ""], [1], ["tn_a"]),
            (["page", "failed", "timeout"], [1], ["tn_b"]),
            (["fetched"], [1024], ["tn_a"]),  # the tenant comes from the handler's context
        ]
    )
    assert points[8:10] == [(["task", "completed"], [1], ["tn_a"]), (["webhook", "delivered"], [1], ["tn_a"])]
    assert points[10] == (["webhook", "retrying"], [1], ["t" * 96])
    assert result["miniflareWrites"] == len(points) == 11

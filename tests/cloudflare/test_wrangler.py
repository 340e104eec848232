"""The real wrangler (node_modules, pinned in package.json) on our configs, offline: `deploy --dry-run` of both
Workers in both environments uploads exactly the bundle with the bindings we configured, every config key is
in wrangler's schema, and `whoami` without credentials becomes our clear "not logged in"."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scrapeq.cloudflare import configs
from scrapeq.cloudflare.bundle import BUILD_DIR, PROJECT_DIR
from scrapeq.cloudflare.wrangler import NOT_LOGGED_IN, NotLoggedIn, Wrangler
from shared.backends import cloudflare

ROOT = Path(__file__).resolve().parents[2]
WRANGLER = ROOT / "node_modules" / ".bin" / "wrangler"
SCHEMA = ROOT / "node_modules" / "wrangler" / "config-schema.json"
#: Where wrangler runs, as pywrangler runs it: the directory of the configs.
WORKERS_DIR = ROOT / PROJECT_DIR
ENTRY = {"producer": "producer/worker.py", "consumer": "consumer/worker.py"}
CONFIG = {"producer": "wrangler.toml", "consumer": "wrangler.consumer.toml"}
CASES = [(worker, env) for env in (None, "staging") for worker in ("producer", "consumer")]
ROW = re.compile(r"^env\.(?P<name>\S+) \((?P<value>.*)\)\s{2,}(?P<kind>\S.*?)\s*$")

pytestmark = pytest.mark.timeout(300)


def require_wrangler() -> None:
    if not WRANGLER.exists():
        pytest.fail(
            f"{WRANGLER.relative_to(ROOT)} is missing: `make test` installs it (npm install from package.json); "
            "or run `npm install` in the repository root"
        )


def offline_env(home: Path) -> dict[str, str]:
    """A clean environment: no credentials, an empty HOME, no prompts, no metrics, no update check."""
    (home / ".config").mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "CI": "1",
        "WRANGLER_SEND_METRICS": "false",
        "WRANGLER_SEND_ERROR_REPORTS": "false",
        "WRANGLER_HIDE_BANNER": "true",
        "NO_COLOR": "1",
        "FORCE_COLOR": "0",
    }


@dataclass(frozen=True)
class DryRun:
    worker: str
    env: str | None
    result: subprocess.CompletedProcess[str]
    metadata: dict[str, Any]
    modules: list[str]
    outdir: Path

    @property
    def view(self) -> configs.EnvView:
        return configs.view(configs.load(WORKERS_DIR / CONFIG[self.worker]), self.env)


def parse_upload(form: bytes) -> tuple[dict[str, Any], list[str]]:
    """The multipart body wrangler would upload: its `metadata` part and the module names, in order."""
    boundary = form.split(b"\r\n", 1)[0][2:]
    head = b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n\r\n"
    message = email.message_from_bytes(head + form, policy=email.policy.HTTP)
    metadata: dict[str, Any] = {}
    modules: list[str] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "metadata":
            metadata = json.loads(part.get_payload(decode=True))
        else:
            modules.append(str(name))
    return metadata, modules


def dry_run_in(cwd: Path, worker: str, env: str | None, out: Path, environ: dict[str, str]) -> DryRun:
    """`wrangler deploy --dry-run` of one Worker, run in `cwd` as pywrangler runs it; the upload is kept in `out`."""
    outputs = ["--outdir", str(out / "modules"), "--outfile", str(out / "upload.form")]
    target = ["-c", CONFIG[worker], f"--env={env or ''}"]
    result = subprocess.run(
        ["npx", "--no-install", "wrangler", "deploy", "--dry-run", *outputs, *target],
        cwd=cwd,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    metadata, modules = parse_upload((out / "upload.form").read_bytes())
    return DryRun(worker, env, result, metadata, modules, out / "modules")


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str | None], DryRun]:
    require_wrangler()
    env = offline_env(tmp_path_factory.mktemp("home"))
    runs = {}
    for worker, wrangler_env in CASES:
        out = tmp_path_factory.mktemp(f"{worker}-{wrangler_env or 'production'}")
        runs[worker, wrangler_env] = dry_run_in(WORKERS_DIR, worker, wrangler_env, out, env)
    return runs


@pytest.fixture(params=CASES, ids=[f"{w}-{e or 'production'}" for w, e in CASES])
def dry_run(request: pytest.FixtureRequest, dry_runs: dict[tuple[str, str | None], DryRun]) -> DryRun:
    return dry_runs[request.param]


def test_dry_run_succeeds_without_warnings(dry_run: DryRun) -> None:
    assert "--dry-run: exiting now." in dry_run.result.stdout
    assert "WARNING" not in dry_run.result.stderr and "Unexpected fields" not in dry_run.result.stderr
    assert f"Running: python3 -m scrapeq.cloudflare.bundle {dry_run.worker}" in dry_run.result.stdout


def test_the_upload_is_the_module_root_the_build_step_wrote_under_the_workers_dir(dry_run: DryRun) -> None:
    module_root = ROOT / BUILD_DIR / dry_run.worker
    built = sorted(p.relative_to(module_root).as_posix() for p in module_root.rglob("*.py"))
    assert built == sorted(m for m in dry_run.modules if not m.startswith("python_modules/"))


def test_python_modules_beside_the_configs_is_uploaded(tmp_path: Path) -> None:
    """Where pywrangler, run in the configs' directory, vendors the packages is where wrangler takes them from:
    a copy of that directory in a mirror of the checkout, with a stand-in python_modules/, offline."""
    require_wrangler()
    mirror = tmp_path / "checkout"
    workers = mirror / PROJECT_DIR
    workers.mkdir(parents=True)
    for name in ("producer", "consumer", "shared", "scrapeq", "node_modules"):
        (mirror / name).symlink_to(ROOT / name, target_is_directory=True)
    for name in (*CONFIG.values(), "pyproject.toml"):
        shutil.copyfile(WORKERS_DIR / name, workers / name)
    vendored = workers / "python_modules" / "vendored_stand_in"
    vendored.mkdir(parents=True)
    (vendored / "__init__.py").write_text("")
    run = dry_run_in(workers, "producer", None, tmp_path / "out", offline_env(tmp_path / "home"))
    assert "python_modules/vendored_stand_in/__init__.py" in run.modules
    assert (mirror / BUILD_DIR / "producer" / "entry.py").is_file()


def test_upload_is_the_bundle_and_nothing_else(dry_run: DryRun) -> None:
    assert dry_run.metadata["main_module"] == "entry.py"
    modules = dry_run.modules
    assert modules[0] == "entry.py"
    for expected in (ENTRY[dry_run.worker], "shared/models.py", "shared/settings.py", "shared/backends/cloudflare.py"):
        assert expected in modules
    other = "consumer" if dry_run.worker == "producer" else "producer"
    foreign = [
        m for m in modules if m != "entry.py" and m.split("/")[0] not in (dry_run.worker, "shared", "python_modules")
    ]
    assert foreign == [], f"uploaded from outside the bundle: {foreign}"
    assert not [m for m in modules if m.startswith((f"{other}/", "tests/", ".venv", "node_modules", "scrapeq/"))]
    assert not [m for m in modules if "__pycache__" in m or not (m.endswith(".py") or m.startswith("python_modules/"))]
    written = sorted(p.relative_to(dry_run.outdir).as_posix() for p in dry_run.outdir.rglob("*.py"))
    assert written == sorted(m for m in modules if not m.startswith("python_modules/"))


def test_bindings_are_the_configured_kv_queue_and_vars(dry_run: DryRun) -> None:
    view = dry_run.view
    by_type: dict[str, list[dict[str, Any]]] = {}
    for binding in dry_run.metadata["bindings"]:
        by_type.setdefault(binding["type"], []).append(binding)
    assert by_type["kv_namespace"] == [{"name": "KV", "type": "kv_namespace", "namespace_id": view.kv_id}]
    assert by_type["queue"] == [{"type": "queue", "name": "JOBS", "queue_name": view.jobs_queue}]
    assert {b["name"]: b["text"] for b in by_type["plain_text"]} == view.vars
    assert by_type.pop("ratelimit", []) == [
        {"type": "ratelimit", **limit} for limit in rate_limits(dry_run.worker, dry_run.env)
    ]
    dataset = f"scrapeq_metrics{'' if dry_run.env is None else '_staging'}"
    assert by_type["analytics_engine"] == [{"type": "analytics_engine", "name": "METRICS", "dataset": dataset}]
    assert view.metrics_dataset == dataset
    # The backups bucket: the consumer's only (its daily cron writes there), one per environment.
    backups = by_type.pop("r2_bucket", [])
    if dry_run.worker == "consumer":
        bucket = f"scrapeq-backups{'' if dry_run.env is None else '-staging'}"
        assert backups == [{"name": "BACKUPS", "type": "r2_bucket", "bucket_name": bucket}]
        assert view.backups_bucket == bucket
    else:
        assert backups == []
    # The coordination Durable Object: the consumer exports the class, the producer binds the consumer's.
    suffix = "" if dry_run.env is None else "-staging"
    coordination = {"name": "COORDINATION", "type": "durable_object_namespace", "class_name": "Coordination"}
    if dry_run.worker == "producer":
        coordination["script_name"] = f"scrapeq-consumer{suffix}"
    assert by_type.pop("durable_object_namespace", []) == [coordination]
    assert set(by_type) == {"kv_namespace", "queue", "plain_text", "analytics_engine"}
    expected_queue = "scrapeq-jobs" if dry_run.env is None else "scrapeq-jobs-staging"
    assert view.jobs_queue == expected_queue
    assert view.vars["SCRAPEQ_DEAD_LETTER_QUEUE"] == f"scrapeq-jobs-dlq{'' if dry_run.env is None else '-staging'}"


def rate_limits(worker: str, env: str | None) -> list[dict[str, Any]]:
    """The `[[ratelimits]]` of a Worker in an environment, as its config has them."""
    return list(configs.section(configs.load(WORKERS_DIR / CONFIG[worker]), env).get("ratelimits", []))


def test_the_producer_has_a_rate_limiter_binding_per_limit_and_the_consumer_none(dry_run: DryRun) -> None:
    limits = rate_limits(dry_run.worker, dry_run.env)
    if dry_run.worker == "consumer":
        assert limits == []
        return
    assert sorted(limit["name"] for limit in limits) == sorted(cloudflare.RATE_LIMIT_BINDINGS.values())
    assert {limit["simple"]["period"] for limit in limits} == {cloudflare.RATE_LIMIT_PERIOD_S}
    other = rate_limits("producer", "staging" if dry_run.env is None else None)
    # Namespaces are account-wide: staging must not spend production's counters.
    assert not {limit["namespace_id"] for limit in limits} & {limit["namespace_id"] for limit in other}


def test_printed_bindings_table_matches_the_upload(dry_run: DryRun) -> None:
    rows = {m["name"]: (m["value"], m["kind"]) for line in dry_run.result.stdout.splitlines() if (m := ROW.match(line))}
    view = dry_run.view
    assert rows.pop("KV") == (view.kv_id, "KV Namespace")
    assert rows.pop("JOBS") == (view.jobs_queue, "Queue")
    assert rows.pop("METRICS") == (view.metrics_dataset, "Analytics Engine Dataset")
    if dry_run.worker == "consumer":
        assert rows.pop("BACKUPS") == (view.backups_bucket, "R2 Bucket")
        assert rows.pop("COORDINATION") == ("Coordination", "Durable Object")
    else:
        consumer = f"scrapeq-consumer{'' if dry_run.env is None else '-staging'}"
        assert rows.pop("COORDINATION") == (f"Coordination, defined in {consumer}", "Durable Object")
    for limit in rate_limits(dry_run.worker, dry_run.env):
        simple = limit["simple"]
        assert rows.pop(limit["name"]) == (f"{simple['limit']} requests/{simple['period']}s", "Rate Limit")
    assert rows == {name: (json.dumps(value), "Environment Variable") for name, value in view.vars.items()}


def test_runtime_settings_of_the_upload(dry_run: DryRun) -> None:
    metadata = dry_run.metadata
    assert metadata["compatibility_date"] == "2026-11-17"
    assert metadata["compatibility_flags"] == ["python_workers"]
    if dry_run.worker == "consumer":
        assert metadata["limits"] == {"cpu_ms": 300_000}
    else:
        assert "limits" not in metadata


TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "number": (int, float),
}


def schema_problems(value: Any, schema: dict[str, Any], definitions: dict[str, Any], path: str) -> list[str]:
    """Keys and types of `value` that the JSON schema does not allow (the subset wrangler's schema uses)."""
    if "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        options = [schema_problems(value, option, definitions, path) for option in schema["anyOf"]]
        return [] if any(not found for found in options) else options[0]
    kind = schema.get("type")
    allowed = [kind] if isinstance(kind, str) else kind or []
    if allowed and not any(isinstance(value, TYPES[t]) for t in allowed if t in TYPES):
        return [f"{path}: {type(value).__name__} where the schema wants {kind}"]
    return member_problems(value, schema, definitions, path)


def member_problems(value: Any, schema: dict[str, Any], definitions: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                problems += schema_problems(item, properties[key], definitions, f"{path}.{key}")
            elif extra is False:
                problems.append(f"{path}.{key}: not in wrangler's schema")
            elif isinstance(extra, dict):
                problems += schema_problems(item, extra, definitions, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problems += schema_problems(item, schema["items"], definitions, f"{path}[{index}]")
    return problems


@pytest.mark.parametrize("name", sorted(CONFIG.values()))
def test_every_config_key_is_in_wranglers_schema(name: str) -> None:
    require_wrangler()
    schema = json.loads(SCHEMA.read_text())
    config = configs.load(WORKERS_DIR / name)
    assert schema_problems(config, {"$ref": schema["$ref"]}, schema["definitions"], name) == []
    # and the walker does catch a stray key
    config["queues"]["producers"][0]["max_batch"] = 1
    assert schema_problems(config, {"$ref": schema["$ref"]}, schema["definitions"], name) != []


def test_whoami_without_credentials_is_not_logged_in(tmp_path: Path) -> None:
    require_wrangler()
    wrangler = Wrangler(
        ("npx", "--no-install", "wrangler"), cwd=WORKERS_DIR, environ=offline_env(tmp_path), timeout_s=60
    )
    with pytest.raises(NotLoggedIn):
        wrangler.whoami()


def test_setup_without_credentials_says_how_to_log_in(tmp_path: Path) -> None:
    require_wrangler()
    done = subprocess.run(
        [sys.executable, "-m", "scrapeq", "cloudflare", "--root", str(ROOT), "setup", "--env", "staging"],
        cwd=ROOT,
        env=offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == f"scrapeq: error: {NOT_LOGGED_IN}"


def test_the_consumer_runs_the_daily_backup_cron_in_both_environments(dry_run: DryRun) -> None:
    """wrangler's dry run prints no triggers and uploads none (they are set after the upload), so the cron is
    checked in the config wrangler validated: the schedule `shared.cron` dispatches on, in each environment."""
    from shared import cron

    crons = dry_run.view.crons
    assert crons == ((cron.DAILY_BACKUP,) if dry_run.worker == "consumer" else ())
    assert set(crons) <= set(cron.SCHEDULES)
    assert dry_run.view.vars["SCRAPEQ_BACKUP_RETENTION_DAYS"] == "30"


def test_the_coordination_class_is_migrated_as_sqlite_backed_by_its_worker_only() -> None:
    """Its storage must be SQLite-backed (the object uses the synchronous `ctx.storage.kv`); wrangler's dry run does
    not show migrations, so the configs are read (staging inherits the top-level `migrations`)."""
    consumer = configs.load(WORKERS_DIR / CONFIG["consumer"])
    assert consumer["migrations"] == [{"tag": "v1", "new_sqlite_classes": ["Coordination"]}]
    assert "migrations" not in consumer.get("env", {}).get("staging", {})
    assert "migrations" not in configs.load(WORKERS_DIR / CONFIG["producer"])

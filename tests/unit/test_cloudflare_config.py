"""The wrangler configs: the shipped pair is consistent, and `set_kv_id` edits one id and nothing else."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from scrapeq.cloudflare import configs
from scrapeq.cloudflare.bundle import ENTRY, PROJECT_DIR, WORKERS, WorkerSpec, default_module_root
from scrapeq.cloudflare.configs import (
    PLACEHOLDER_ID,
    check_pair,
    coordination_problems,
    is_namespace_id,
    section,
    set_kv_id,
    view,
)
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
#: The configs' directory: wrangler and pywrangler run here, and relative paths in the configs start here.
WORKERS_DIR = ROOT / PROJECT_DIR
NEW_ID = "0123456789abcdef0123456789abcdef"
ENVS = [None, "staging"]


def load(name: str) -> dict[str, Any]:
    return configs.load(WORKERS_DIR / name)


def test_the_configs_are_in_the_workers_dir_and_nowhere_else() -> None:
    assert sorted(worker.config_path.as_posix() for worker in WORKERS.values()) == [
        "deploy/cloudflare/wrangler.consumer.toml",
        "deploy/cloudflare/wrangler.toml",
    ]
    # pywrangler reads the pyproject.toml and wrangler.toml of its directory: both are here. With no wrangler
    # config at the repository root, pywrangler run there stops instead of vendoring the default install's list.
    assert (WORKERS_DIR / "pyproject.toml").is_file()
    assert not [name for name in ("wrangler.toml", "wrangler.jsonc", "wrangler.json") if (ROOT / name).exists()]


@pytest.mark.parametrize("worker", WORKERS.values(), ids=list(WORKERS))
def test_config_uploads_the_module_root_its_build_step_writes(worker: WorkerSpec) -> None:
    config = load(worker.config)
    module_root = default_module_root(ROOT, worker)
    assert (WORKERS_DIR / config["base_dir"]).resolve() == module_root.resolve()
    assert (WORKERS_DIR / config["main"]).resolve() == (module_root / ENTRY).resolve()
    build = config["build"]
    assert build["command"] == f"python3 -m scrapeq.cloudflare.bundle {worker.name}"
    # wrangler runs the command in `cwd` taken from the directory it runs in (this one): the repository root.
    assert (WORKERS_DIR / build["cwd"]).resolve() == ROOT.resolve()
    assert sorted((WORKERS_DIR / d).resolve() for d in build["watch_dir"]) == sorted(
        (ROOT / package).resolve() for package in worker.packages
    )


@pytest.mark.parametrize("env", ENVS)
def test_shipped_configs_agree_with_each_other(env: str | None) -> None:
    assert check_pair(load("wrangler.toml"), load("wrangler.consumer.toml"), env) == []


def test_shipped_configs_run_python_3_14_with_the_python_workers_flag() -> None:
    for name in ("wrangler.toml", "wrangler.consumer.toml"):
        config = load(name)
        assert config["compatibility_date"] == "2026-11-17"
        assert config["compatibility_flags"] == ["python_workers"]


@pytest.mark.parametrize("env", ENVS)
def test_shipped_consumer_runs_one_slice_per_invocation_and_consumes_its_dlq(env: str | None) -> None:
    consumer = load("wrangler.consumer.toml")
    assert consumer["limits"] == {"cpu_ms": 300_000}
    seen = view(consumer, env)
    jobs, dead = seen.consumers
    assert jobs["queue"] == seen.jobs_queue and jobs["max_batch_size"] == 1
    assert dead["queue"] == seen.dead_letter_queue == seen.vars["SCRAPEQ_DEAD_LETTER_QUEUE"]
    assert "dead_letter_queue" not in dead


@pytest.mark.parametrize("env", ENVS)
def test_shipped_slices_stay_far_under_the_workers_limits(env: str | None) -> None:
    settings = Settings.from_mapping(view(load("wrangler.consumer.toml"), env).vars)
    # CPU time ≤ wall time (one thread). A slice stops launching after slice_max_s; what is in flight then
    # still takes up to a page's deadline. Far under 5 min of CPU and 15 min of wall time:
    assert settings.slice_max_s + settings.fetch_total_timeout_s <= 120
    assert settings.crawl_concurrency <= 6  # Workers open at most 6 connections at once
    assert settings.fetch_max_body_bytes <= 2 * 1024 * 1024  # far under the ~40 MB FFI crash, × the window


@pytest.mark.parametrize("env", ENVS)
def test_shipped_ids_are_the_placeholder_or_a_real_namespace_id(env: str | None) -> None:
    for name in ("wrangler.toml", "wrangler.consumer.toml"):
        namespace_id = view(load(name), env).kv_id
        assert namespace_id == PLACEHOLDER_ID or is_namespace_id(namespace_id)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (NEW_ID, True),
        (PLACEHOLDER_ID, False),
        (None, False),
        ("", False),
        (NEW_ID.upper(), False),
        (NEW_ID[:-1], False),
    ],
)
def test_is_namespace_id(value: str | None, expected: bool) -> None:
    assert is_namespace_id(value) is expected


SAMPLE = """\
# a comment that mentions id = "x"
name = "w"

[[kv_namespaces]]
id = "old-top"   # the id comes first here
binding = "KV"

[[kv_namespaces]]
binding = "OTHER"
id = "other-top"

[env.staging.vars]
A = "1"

[[env.staging.kv_namespaces]]
binding = 'KV'
id = 'old-staging'
"""


@pytest.mark.parametrize(
    ("env", "old_line", "new_line"),
    [
        (None, 'id = "old-top"   # the id comes first here\n', f'id = "{NEW_ID}"   # the id comes first here\n'),
        ("staging", "id = 'old-staging'\n", f"id = '{NEW_ID}'\n"),
    ],
)
def test_set_kv_id_changes_that_one_line(env: str | None, old_line: str, new_line: str) -> None:
    edited = set_kv_id(SAMPLE, env, NEW_ID)
    assert edited == SAMPLE.replace(old_line, new_line)
    assert view(tomllib.loads(edited), env).kv_id == NEW_ID


def test_set_kv_id_keeps_crlf_line_endings() -> None:
    crlf = SAMPLE.replace("\n", "\r\n")
    assert set_kv_id(crlf, None, NEW_ID) == crlf.replace('id = "old-top"', f'id = "{NEW_ID}"')


@pytest.mark.parametrize(
    ("text", "env", "namespace_id", "message"),
    [
        (SAMPLE, None, "not-hex", "not a KV namespace id"),
        (SAMPLE, "production", NEW_ID, "no [[env.production.kv_namespaces]] table"),
        ('[[kv_namespaces]]\nbinding = "KV"\n', None, NEW_ID, "no `id"),
        ('[[kv_namespaces]]\nbinding = "OTHER"\nid = "x"\n', None, NEW_ID, 'binding = "KV"'),
    ],
)
def test_set_kv_id_refuses_what_it_cannot_edit_safely(
    text: str, env: str | None, namespace_id: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        set_kv_id(text, env, namespace_id)


def test_set_kv_id_on_the_shipped_configs_leaves_everything_else_equal() -> None:
    for name in ("wrangler.toml", "wrangler.consumer.toml"):
        text = (WORKERS_DIR / name).read_text()
        for env in ENVS:
            edited = tomllib.loads(set_kv_id(text, env, NEW_ID))
            original = tomllib.loads(text)
            assert view(edited, env).kv_id == NEW_ID
            other = "staging" if env is None else None
            assert view(edited, other) == view(original, other)


@pytest.mark.parametrize("env", ENVS)
def test_a_missing_or_mismatched_coordination_binding_is_a_problem(env: str | None) -> None:
    producer, consumer = load("wrangler.toml"), load("wrangler.consumer.toml")
    assert coordination_problems(producer, consumer, env) == []
    wrong = copy.deepcopy(producer)
    section(wrong, env)["durable_objects"]["bindings"][0]["script_name"] = "scrapeq-api"
    assert coordination_problems(wrong, consumer, env) == [
        "the producer's COORDINATION binding names script 'scrapeq-api'"
    ]
    unmigrated = copy.deepcopy(consumer)
    unmigrated["migrations"] = [{"tag": "v1", "new_classes": ["Coordination"]}]  # not SQLite-backed
    assert coordination_problems(producer, unmigrated, env) == [
        "the consumer's migrations do not create Coordination as a SQLite-backed class"
    ]
    unbound = copy.deepcopy(consumer)
    del section(unbound, env)["durable_objects"]
    assert check_pair(producer, unbound, env) == ["the consumer has no COORDINATION binding of class Coordination"]

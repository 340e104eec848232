"""The two wrangler configs as scrapeq reads and edits them: one environment's view, the consistency rules
between the two files, and the one edit `setup` makes (`set_kv_id`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KV_BINDING = "KV"
JOBS_BINDING = "JOBS"
#: The Workers Analytics Engine dataset both Workers write their data points to (shared/backends/analytics.py).
METRICS_BINDING = "METRICS"
#: The consumer's R2 bucket of daily backups (shared/backups.py).
BACKUPS_BINDING = "BACKUPS"
#: The coordination Durable Object (shared/backends/durable.py): exported by the consumer, bound by both Workers.
COORDINATION_BINDING = "COORDINATION"
COORDINATION_CLASS = "Coordination"
#: What the committed configs carry until `scrapeq cloudflare setup` writes the real namespace ids.
PLACEHOLDER_ID = "set-by-scrapeq-cloudflare-setup"
_NAMESPACE_ID = re.compile(r"[0-9a-f]{32}")
_ARRAY_TABLE = re.compile(r"^\s*\[\[\s*(?P<name>[^\[\]]+?)\s*\]\]\s*(#.*)?$")
_TABLE = re.compile(r"^\s*\[\s*(?P<name>[^\[\]]+?)\s*\]\s*(#.*)?$")
_BINDING_KV = re.compile(r"""^\s*binding\s*=\s*(["'])KV\1\s*(#.*)?$""")
_ID = re.compile(r"""^(?P<head>\s*id\s*=\s*)(?P<quote>["'])[^"'\\\n]*(?P=quote)(?P<tail>\s*(#.*)?\r?\n?)$""")


def env_label(env: str | None) -> str:
    return env or "production"


def is_namespace_id(value: str | None) -> bool:
    """A real KV namespace id (32 hex digits), not the placeholder or an empty value."""
    return value is not None and _NAMESPACE_ID.fullmatch(value) is not None


def load(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        return tomllib.load(file)


def section(config: dict[str, Any], env: str | None) -> dict[str, Any]:
    """The keys that apply to `env`: the top level, or `[env.<env>]` (which must exist)."""
    if env is None:
        return config
    found = config.get("env", {}).get(env)
    if not isinstance(found, dict):
        raise ValueError(f"no [env.{env}] section in the wrangler config")
    return found


@dataclass(frozen=True)
class EnvView:
    """What scrapeq needs to know about one Worker in one environment."""

    kv_id: str | None
    jobs_queue: str | None
    consumers: list[dict[str, Any]]
    vars: dict[str, Any]
    metrics_dataset: str | None = None
    backups_bucket: str | None = None
    crons: tuple[str, ...] = ()
    #: The `COORDINATION` Durable Object binding as configured (its class_name, and script_name if another's).
    coordination: dict[str, Any] | None = None

    @property
    def dead_letter_queue(self) -> str | None:
        return next((c.get("dead_letter_queue") for c in self.consumers if c.get("queue") == self.jobs_queue), None)


def view(config: dict[str, Any], env: str | None) -> EnvView:
    keys = section(config, env)
    queues = keys.get("queues", {})
    kv = [ns for ns in keys.get("kv_namespaces", []) if ns.get("binding") == KV_BINDING]
    jobs = [p for p in queues.get("producers", []) if p.get("binding") == JOBS_BINDING]
    metrics = [d for d in keys.get("analytics_engine_datasets", []) if d.get("binding") == METRICS_BINDING]
    buckets = [b for b in keys.get("r2_buckets", []) if b.get("binding") == BACKUPS_BINDING]
    objects = [b for b in keys.get("durable_objects", {}).get("bindings", []) if b.get("name") == COORDINATION_BINDING]
    return EnvView(
        kv_id=kv[0].get("id") if kv else None,
        jobs_queue=jobs[0].get("queue") if jobs else None,
        consumers=list(queues.get("consumers", [])),
        vars=dict(keys.get("vars", {})),
        metrics_dataset=metrics[0].get("dataset") if metrics else None,
        backups_bucket=buckets[0].get("bucket_name") if buckets else None,
        crons=tuple(keys.get("triggers", {}).get("crons", [])),
        coordination=dict(objects[0]) if objects else None,
    )


def worker_name(config: dict[str, Any], env: str | None) -> str:
    """The deployed Worker's name in `env`: wrangler appends `-<env>` unless the environment names it."""
    own = section(config, env).get("name") if env is not None else None
    return str(own or (config.get("name", "") + (f"-{env}" if env else "")))


def coordination_problems(producer: dict[str, Any], consumer: dict[str, Any], env: str | None) -> list[str]:
    """What keeps the Workers from sharing the coordination object in `env` (empty: nothing)."""
    problems: list[str] = []
    exporter = worker_name(consumer, env)
    for who, config, script in (("producer", producer, exporter), ("consumer", consumer, None)):
        binding = view(config, env).coordination
        if binding is None or binding.get("class_name") != COORDINATION_CLASS:
            problems.append(f"the {who} has no {COORDINATION_BINDING} binding of class {COORDINATION_CLASS}")
        elif binding.get("script_name") != script:
            problems.append(f"the {who}'s {COORDINATION_BINDING} binding names script {binding.get('script_name')!r}")
    migrated = [c for m in consumer.get("migrations", []) for c in m.get("new_sqlite_classes", [])]
    if COORDINATION_CLASS not in migrated:
        problems.append(f"the consumer's migrations do not create {COORDINATION_CLASS} as a SQLite-backed class")
    return problems


def check_pair(producer: dict[str, Any], consumer: dict[str, Any], env: str | None) -> list[str]:
    """What is wrong between the producer's and the consumer's config for `env` (empty: nothing)."""
    problems: list[str] = []
    for key in ("compatibility_date", "compatibility_flags"):
        if producer.get(key) != consumer.get(key):
            problems.append(f"{key} differs (pywrangler picks the Python version from wrangler.toml alone)")
    ours, theirs = view(producer, env), view(consumer, env)
    for what, mine, other in (
        (f"{KV_BINDING} namespace id", ours.kv_id, theirs.kv_id),
        (f"{JOBS_BINDING} queue", ours.jobs_queue, theirs.jobs_queue),
        (f"{METRICS_BINDING} dataset", ours.metrics_dataset, theirs.metrics_dataset),
    ):
        if mine is None or mine != other:
            problems.append(f"the {what} differs or is missing: {mine!r} / {other!r}")
    if ours.vars != theirs.vars:
        problems.append("[vars] differ between the two Workers")
    problems += coordination_problems(producer, consumer, env)
    dlq = theirs.dead_letter_queue
    if dlq is None:
        problems.append(f"the consumer does not consume {theirs.jobs_queue!r} with a dead_letter_queue")
    else:
        if not any(c.get("queue") == dlq for c in theirs.consumers):
            problems.append(f"the consumer does not consume its dead-letter queue {dlq!r}")
        if theirs.vars.get("SCRAPEQ_DEAD_LETTER_QUEUE") != dlq:
            problems.append(f"SCRAPEQ_DEAD_LETTER_QUEUE is not {dlq!r}")
    jobs = next((c for c in theirs.consumers if c.get("queue") == theirs.jobs_queue), {})
    if str(jobs.get("max_retries")) != theirs.vars.get("SCRAPEQ_QUEUE_MAX_RETRIES"):
        problems.append("max_retries of the jobs consumer differs from SCRAPEQ_QUEUE_MAX_RETRIES")
    return problems


def set_kv_id(text: str, env: str | None, namespace_id: str) -> str:
    """`text` (a wrangler TOML config) with the `id` of env's `KV` binding set; every other byte unchanged.

    The edit replaces the `id` of the `KV` binding of one environment in place and checks, by parsing the result,
    that nothing else changed: the standard library reads TOML but does not write it, and comments stay.
    """
    if not is_namespace_id(namespace_id):
        raise ValueError(f"not a KV namespace id: {namespace_id!r}")
    table = "kv_namespaces" if env is None else f"env.{env}.kv_namespaces"
    lines = text.splitlines(keepends=True)
    start = _find_binding_table(lines, table)
    for index in range(start + 1, len(lines)):
        if _ARRAY_TABLE.match(lines[index]) or _TABLE.match(lines[index]):
            break
        if match := _ID.match(lines[index]):
            q = match["quote"]
            lines[index] = f"{match['head']}{q}{namespace_id}{q}{match['tail']}"
            edited = "".join(lines)
            _check_only_id_changed(text, edited, env, namespace_id)
            return edited
    raise ValueError(f'no `id = "…"` line in the [[{table}]] table of the KV binding: add one')


def _find_binding_table(lines: list[str], table: str) -> int:
    """Index of the `[[table]]` header whose table has `binding = "KV"`."""
    current: int | None = None
    for index, line in enumerate(lines):
        if header := _ARRAY_TABLE.match(line) or _TABLE.match(line):
            name = re.sub(r"\s*\.\s*", ".", header["name"]).replace('"', "")
            current = index if line.lstrip().startswith("[[") and name == table else None
        elif current is not None and _BINDING_KV.match(line):
            return current
    raise ValueError(f'no [[{table}]] table with binding = "{KV_BINDING}"')


def _check_only_id_changed(before: str, after: str, env: str | None, namespace_id: str) -> None:
    old, new = tomllib.loads(before), tomllib.loads(after)
    if view(new, env).kv_id != namespace_id:
        raise ValueError("editing the KV namespace id went wrong: the config does not read back")
    for namespace in section(new, env).get("kv_namespaces", []):
        if namespace.get("binding") == KV_BINDING:
            namespace["id"] = view(old, env).kv_id
    if new != old:
        raise ValueError("editing the KV namespace id would change more than the id: edit the config by hand")

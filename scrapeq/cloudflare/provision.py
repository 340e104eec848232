"""`scrapeq cloudflare setup` and `verify`: create through wrangler only what a deployment lacks (a KV namespace,
the jobs queues, the backups bucket, per environment), write the namespace id into both configs, check.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrapeq.cloudflare import configs
from scrapeq.cloudflare.bundle import CONSUMER, PRODUCER, PROJECT_DIR, WORKERS, WorkerSpec
from scrapeq.cloudflare.wrangler import Wrangler, WranglerError

Say = Callable[[str], None]


def namespace_title(env: str | None) -> str:
    """The KV namespace's title in the account (titles are unique per account)."""
    return "scrapeq-kv" if env is None else f"scrapeq-kv-{env}"


@dataclass(frozen=True)
class Project:
    """The repository root, whose `deploy/cloudflare/` holds both wrangler configs."""

    root: Path

    def __post_init__(self) -> None:
        for worker in WORKERS.values():
            if not self.path(worker).is_file():
                raise FileNotFoundError(
                    f"no {worker.config_path} in {self.root}: run from the repository root or pass --root"
                )

    @property
    def workers_dir(self) -> Path:
        """Where the configs are, and so where wrangler runs (as pywrangler does)."""
        return self.root / PROJECT_DIR

    def path(self, worker: WorkerSpec) -> Path:
        return self.root / worker.config_path

    def load(self, worker: WorkerSpec) -> dict[str, Any]:
        return configs.load(self.path(worker))

    def queues(self, env: str | None) -> tuple[str, str]:
        """(jobs queue, its dead-letter queue) as the consumer's config names them for `env`."""
        consumer = configs.view(self.load(CONSUMER), env)
        if consumer.jobs_queue is None or consumer.dead_letter_queue is None:
            path = CONSUMER.config_path
            raise ValueError(f"{path} names no jobs queue with a dead_letter_queue for this environment")
        return consumer.jobs_queue, consumer.dead_letter_queue

    def backups_bucket(self, env: str | None) -> str:
        """The consumer's R2 bucket of backups for `env`, as its config names it."""
        bucket = configs.view(self.load(CONSUMER), env).backups_bucket
        if bucket is None:
            raise ValueError(f"{CONSUMER.config_path} has no {configs.BACKUPS_BINDING} R2 bucket for this environment")
        return bucket

    def kv_id(self, env: str | None) -> str:
        """The configured KV namespace id for `env`; an error while it is still the placeholder."""
        namespace_id = configs.view(self.load(PRODUCER), env).kv_id
        if namespace_id is None or not configs.is_namespace_id(namespace_id):
            label = configs.env_label(env)
            path = PRODUCER.config_path
            raise ValueError(f"no KV namespace id for {label} in {path}: run `scrapeq cloudflare setup`")
        return namespace_id


def setup(project: Project, wrangler: Wrangler, env: str | None, *, say: Say) -> str:
    """Create what is missing for `env` and write the namespace id into both configs; returns the id.

    The queue names come from the consumer's config, so the configs stay the one place that names them.
    """
    user = wrangler.whoami()
    say(f"logged in to Cloudflare as {user.get('email') or user.get('authType') or 'an API token'}")
    namespace_id = ensure_namespace(wrangler, namespace_title(env), say=say)
    for queue in project.queues(env):
        ensure_queue(wrangler, queue, say=say)
    ensure_bucket(wrangler, project.backups_bucket(env), say=say)
    for worker in WORKERS.values():
        write_kv_id(project, worker, env, namespace_id, say=say)
    return namespace_id


def ensure_namespace(wrangler: Wrangler, title: str, *, say: Say) -> str:
    found = _namespace_id(wrangler, title)
    if found is not None:
        say(f"KV namespace {title}: exists (id {found})")
        return found
    say(f"KV namespace {title}: creating")
    wrangler.create_kv_namespace(title)
    found = _namespace_id(wrangler, title)
    if found is None:
        raise WranglerError(f"created KV namespace {title}, but `wrangler kv namespace list` does not show it")
    say(f"KV namespace {title}: created (id {found})")
    return found


def _namespace_id(wrangler: Wrangler, title: str) -> str | None:
    return next((str(ns["id"]) for ns in wrangler.kv_namespaces() if ns.get("title") == title and "id" in ns), None)


def ensure_queue(wrangler: Wrangler, name: str, *, say: Say) -> None:
    if wrangler.queue_exists(name):
        say(f"queue {name}: exists")
        return
    say(f"queue {name}: creating")
    wrangler.create_queue(name)
    say(f"queue {name}: created")


def ensure_bucket(wrangler: Wrangler, name: str, *, say: Say) -> None:
    if wrangler.r2_bucket_exists(name):
        say(f"R2 bucket {name}: exists")
        return
    say(f"R2 bucket {name}: creating")
    wrangler.create_r2_bucket(name)
    say(f"R2 bucket {name}: created")


def write_kv_id(project: Project, worker: WorkerSpec, env: str | None, namespace_id: str, *, say: Say) -> None:
    path = project.path(worker)
    text = path.read_bytes().decode("utf-8")  # bytes: keep line endings exactly as they are
    label = configs.env_label(env)
    if configs.view(configs.load(path), env).kv_id == namespace_id:
        say(f"{worker.config_path}: KV namespace id for {label} already set")
        return
    path.write_bytes(configs.set_kv_id(text, env, namespace_id).encode("utf-8"))
    say(f"{worker.config_path}: KV namespace id for {label} set to {namespace_id}")


@dataclass(frozen=True)
class Check:
    ok: bool
    what: str
    detail: str = ""


def verify(project: Project, wrangler: Wrangler, env: str | None) -> Iterator[Check]:
    """Every check, in order, as it completes: configs, login, remote resources, dry-run deploys."""
    yield from _config_checks(project, env)
    try:
        user = wrangler.whoami()
    except WranglerError as exc:  # NotLoggedIn included
        yield Check(False, "Cloudflare login", str(exc))
    else:
        yield Check(True, f"logged in to Cloudflare as {user.get('email') or user.get('authType') or 'a token'}")
        yield from _remote_checks(project, wrangler, env)
    with tempfile.TemporaryDirectory(prefix="scrapeq-verify-") as scratch:
        for worker in WORKERS.values():
            # wrangler runs in the configs' directory (`Wrangler.cwd`), so the config goes by its file name.
            result = wrangler.deploy_dry_run(worker.config, env, Path(scratch) / worker.name)
            yield Check(result.ok, f"dry-run deploy of {worker.config_path}", "" if result.ok else result.tail())


def _config_checks(project: Project, env: str | None) -> Iterator[Check]:
    producer, consumer = project.load(PRODUCER), project.load(CONSUMER)
    problems = configs.check_pair(producer, consumer, env)
    yield Check(not problems, "the two wrangler configs agree", "; ".join(problems))
    for worker, config in ((PRODUCER, producer), (CONSUMER, consumer)):
        namespace_id = configs.view(config, env).kv_id
        yield Check(
            configs.is_namespace_id(namespace_id),
            f"{worker.config_path}: KV namespace id for {configs.env_label(env)} is set",
            f"it is {namespace_id!r}: run `scrapeq cloudflare setup`",
        )


def _remote_checks(project: Project, wrangler: Wrangler, env: str | None) -> Iterator[Check]:
    namespace_id = configs.view(project.load(PRODUCER), env).kv_id
    try:
        titles = {str(ns.get("id")): str(ns.get("title")) for ns in wrangler.kv_namespaces()}
        listed = namespace_id in titles
        yield Check(listed, f"KV namespace {namespace_id} exists", "not in `wrangler kv namespace list`")
        for queue in project.queues(env):
            yield Check(wrangler.queue_exists(queue), f"queue {queue} exists", "run `scrapeq cloudflare setup`")
        bucket = project.backups_bucket(env)
        yield Check(wrangler.r2_bucket_exists(bucket), f"R2 bucket {bucket} exists", "run `scrapeq cloudflare setup`")
    except (WranglerError, ValueError) as exc:
        yield Check(False, "KV namespace, queues and R2 bucket exist", str(exc))

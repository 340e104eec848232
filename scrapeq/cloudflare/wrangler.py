"""Running wrangler (`npx --no-install wrangler`, or `SCRAPEQ_WRANGLER`) in deploy/cloudflare with stdin closed,
so it never prompts; its answers become Python values or `WranglerError`s.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ScrapeqError

ENV_VAR = "SCRAPEQ_WRANGLER"
DEFAULT_COMMAND = ("npx", "--no-install", "wrangler")
NOT_LOGGED_IN = "not logged in to Cloudflare: run `npx wrangler login` (or set CLOUDFLARE_API_TOKEN)"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Quiet and non-interactive: no banner (and so no update check), no colours to parse around.
_QUIET = {"WRANGLER_HIDE_BANNER": "true", "FORCE_COLOR": "0", "NO_COLOR": "1"}


class WranglerError(ScrapeqError):
    """wrangler failed, timed out or answered something we cannot read.

    Errors (all `ScrapeqError`s):

    WranglerError           wrangler failed, timed out or answered something unexpected
    ├── WranglerMissing     no wrangler to run (not installed here)
    └── NotLoggedIn         no Cloudflare credentials
    """


class WranglerMissing(WranglerError):
    """There is no wrangler to run."""


class NotLoggedIn(WranglerError):
    def __init__(self) -> None:
        super().__init__(NOT_LOGGED_IN)


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        """stdout and stderr without colour codes, for messages and matching."""
        return _ANSI.sub("", f"{self.stdout}\n{self.stderr}").strip()

    def tail(self, lines: int = 12) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def command_from(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The wrangler command line: `SCRAPEQ_WRANGLER` split like a shell would, else `npx --no-install wrangler`."""
    configured = environ.get(ENV_VAR, "").strip()
    return tuple(shlex.split(configured)) if configured else DEFAULT_COMMAND


def parse_json(stdout: str) -> Any:
    """The JSON document wrangler printed: all of stdout, or from its first `[` or `{` (after a stray log line)."""
    text = _ANSI.sub("", stdout).strip()
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    candidates = [text] + ([text[min(starts) :]] if starts else [])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise WranglerError(f"wrangler printed no JSON where JSON was expected: {text[:300]!r}")


class Wrangler:
    """Runs wrangler commands in `cwd`: the directory of the wrangler configs, as pywrangler does (npx finds the
    repository's node_modules from there), since the configs' `[build] cwd` is relative to it."""

    def __init__(
        self, command: Sequence[str], *, cwd: Path, environ: Mapping[str, str] | None = None, timeout_s: float = 300
    ) -> None:
        self.command = tuple(command)
        self.cwd = cwd
        self.timeout_s = timeout_s
        env = dict(os.environ if environ is None else environ)
        # Our `--env` flag decides the environment, not a CLOUDFLARE_ENV left in the shell.
        env.pop("CLOUDFLARE_ENV", None)
        self.env = {**env, **_QUIET}

    def run(self, *args: str, check: bool = True) -> Result:
        argv = (*self.command, *args)
        try:
            done = subprocess.run(
                argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except FileNotFoundError as exc:
            raise self._missing(str(exc)) from exc
        except subprocess.TimeoutExpired as exc:
            raise self._timeout(args) from exc
        return self._checked(Result(args, done.returncode, done.stdout, done.stderr), check)

    async def run_async(self, *args: str, check: bool = True) -> Result:
        argv = (*self.command, *args)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.cwd,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise self._missing(str(exc)) from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout_s)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise self._timeout(args) from exc
        result = Result(args, proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
        return self._checked(result, check)

    def _checked(self, result: Result, check: bool) -> Result:
        if result.ok or not check:
            return result
        if "npx canceled due to missing packages" in result.output:
            raise self._missing("npx found no local wrangler")
        raise WranglerError(f"`wrangler {' '.join(result.args[:3])}` failed:\n{result.tail()}")

    def _timeout(self, args: Sequence[str]) -> WranglerError:
        return WranglerError(f"`wrangler {' '.join(args[:3])}` did not finish within {self.timeout_s:.0f} s")

    def _missing(self, detail: str) -> WranglerMissing:
        return WranglerMissing(
            f"cannot run wrangler ({' '.join(self.command)}): {detail}. Install it with `npm install` in the "
            f"repository root (`make test` does), or point {ENV_VAR} at a wrangler command"
        )

    # --- the commands scrapeq uses

    def whoami(self) -> dict[str, Any]:
        """The logged-in user (`whoami --json`); `NotLoggedIn` without credentials."""
        result = self.run("whoami", "--json", check=False)
        try:
            answer = parse_json(result.stdout)
        except WranglerError:
            self._checked(result, check=True)  # wrangler's own error (missing, offline, …), else:
            raise
        if isinstance(answer, dict) and answer.get("loggedIn") is True:
            return answer
        if isinstance(answer, dict) and answer.get("loggedIn") is False:
            raise NotLoggedIn
        raise WranglerError(f"unexpected answer from `wrangler whoami --json`: {result.tail()}")

    def kv_namespaces(self) -> list[dict[str, Any]]:
        """Every KV namespace of the account: `{"id", "title", …}`."""
        listed = parse_json(self.run("kv", "namespace", "list").stdout)
        if not isinstance(listed, list):
            raise WranglerError("`wrangler kv namespace list` did not print a JSON list")
        return [ns for ns in listed if isinstance(ns, dict)]

    def create_kv_namespace(self, title: str) -> None:
        self.run("kv", "namespace", "create", title)

    def queue_exists(self, name: str) -> bool:
        result = self.run("queues", "info", name, check=False)
        if result.ok:
            return True
        if "does not exist" in result.output:
            return False
        self._checked(result, check=True)
        return False  # unreachable: _checked raised

    def create_queue(self, name: str) -> None:
        self.run("queues", "create", name)

    def r2_bucket_exists(self, name: str) -> bool:
        result = self.run("r2", "bucket", "info", name, "--json", check=False)
        if result.ok:
            return True
        if "does not exist" in result.output or "10006" in result.output:
            return False
        self._checked(result, check=True)
        return False  # unreachable: _checked raised

    def create_r2_bucket(self, name: str) -> None:
        self.run("r2", "bucket", "create", name)

    async def r2_object_get(self, bucket: str, key: str, file: Path) -> None:
        """Download `bucket/key` into `file` (`r2 object get --remote`)."""
        await self.run_async("r2", "object", "get", f"{bucket}/{key}", "--file", str(file), "--remote")

    async def r2_object_put(self, bucket: str, key: str, file: Path) -> None:
        await self.run_async("r2", "object", "put", f"{bucket}/{key}", "--file", str(file), "--remote")

    def deploy_dry_run(self, config: str, env: str | None, outdir: Path) -> Result:
        """`wrangler deploy --dry-run` of one Worker (offline: bundles, validates, prints the bindings); `config` is
        relative to `cwd`."""
        return self.run("deploy", "--dry-run", "--outdir", str(outdir), "-c", config, f"--env={env or ''}", check=False)

"""The packages `scrapeq dev`, `serve` and `worker` import beyond the core, checked before they start, so that a
missing one is one line naming what to install (exit 2, as every `scrapeq: error:`), never a traceback."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from importlib import metadata

from shared.errors import ScrapeqError
from shared.settings import Settings

DISTRIBUTION = "scrapeq"


@dataclass(frozen=True)
class Need:
    module: str
    #: The project that provides `module`, as `pip install` names it.
    package: str
    what: str


#: uvicorn serves the API (scrapeq/processes.py imports it); aiohttp is the consumer's default fetch engine
#: (consumer/fetch/client.py imports consumer/fetch/aiohttp_transport.py lazily, when the first crawl starts).
UVICORN = Need("uvicorn", "uvicorn", "to serve the API")
AIOHTTP = Need("aiohttp", "aiohttp", "the consumer's fetch engine; SCRAPEQ_FETCH_ENGINE=httpx does without it")
#: The client commands' progress bar (scrapeq/watch.py) and the MCP server (scrapeq/mcp_server.py), both imported
#: only by the commands that use them.
RICH = Need("rich", "rich", "to draw the progress bar")
MCP = Need("mcp", "mcp", "the MCP SDK")
#: The operator metrics every local process records (scrapeq/processes.py imports scrapeq/prometheus.py).
PROMETHEUS = Need("prometheus_client", "prometheus-client", "the operator metrics")


class MissingPackage(ScrapeqError):
    """A command needs a package that is not installed."""


def needs(command: str, settings: Settings) -> list[Need]:
    """What `command` (dev, serve, worker, or a client command) imports beyond the core, under `settings`."""
    found = []
    if command in ("crawl", "task"):
        found.append(RICH)
    if command == "mcp":
        found.append(MCP)
    if command in ("dev", "serve"):
        found.append(UVICORN)
    if command in ("dev", "worker") and settings.fetch_engine == "aiohttp":
        found.append(AIOHTTP)
    if command in ("dev", "serve", "worker"):
        found.append(PROMETHEUS)
    return found


def _missing(need: Need) -> str | None:
    """None when `need.module` imports; else the name of the module that is not there (it or one it imports)."""
    try:
        importlib.import_module(need.module)
    except ModuleNotFoundError as exc:
        return exc.name or need.module
    return None


def install_hint(packages: list[str]) -> str:
    """`pip install` of `packages` with the pins scrapeq's own install declares (bare names if it has none)."""
    try:
        declared = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        declared = []
    pins = {}
    for requirement in declared:
        if ";" not in requirement and (match := re.match(r"([A-Za-z0-9._-]+)", requirement)):
            pins[match[1].lower()] = requirement.replace(" ", "")
    return "pip install " + " ".join(f"'{pins.get(package.lower(), package)}'" for package in packages)


def check(command: str, settings: Settings) -> None:
    """Raise `MissingPackage` (one line) if anything `command` needs cannot be imported."""
    absent = [(need, module) for need in needs(command, settings) if (module := _missing(need)) is not None]
    if not absent:
        return
    names = [need.package for need, _ in absent]
    described = ", ".join(
        f"{need.package} ({need.what}{'' if module == need.module else f'; it lacks {module}'})"
        for need, module in absent
    )
    verb, them = ("is", "it") if len(absent) == 1 else ("are", "them")
    raise MissingPackage(
        f"scrapeq {command} needs {described}, which {verb} not installed: {install_hint(names)} "
        f"(installing scrapeq itself, with no extras, brings {them} too)"
    )

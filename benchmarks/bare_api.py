"""The producer's peer: a bare FastAPI `POST /scrape` that validates a body like scrapeq's and answers 202.

    .venv/bin/python benchmarks/bare_api.py --port PORT

No authentication, storage or queue: the floor of FastAPI + pydantic + uvicorn on this machine. It is served
exactly as `scrapeq serve` serves the real API: uvicorn, one process, the same `uvicorn.Config` flags.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from typing import Annotated

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

app = FastAPI()


class ScrapeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(max_length=2083, pattern=r"^https?://")]
    knowledge_base_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    limit: int = Field(default=1, ge=1, le=10_000)
    max_depth: int | None = Field(default=None, ge=0, le=1000)
    include_paths: list[str] = Field(default_factory=list, max_length=50)
    exclude_paths: list[str] = Field(default_factory=list, max_length=50)
    allow_subdomains: bool = False
    formats: list[str] = Field(default_factory=lambda: ["markdown", "links", "metadata"], max_length=5)
    only_main_content: bool = True


class Accepted(BaseModel):
    task_id: str
    status: str
    status_url: str
    created_at: datetime


@app.post("/scrape", status_code=202)
async def scrape(body: ScrapeBody) -> Accepted:
    task_id = uuid.uuid4().hex
    return Accepted(task_id=task_id, status="queued", status_url=f"/tasks/{task_id}", created_at=datetime.now(UTC))


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    # As scrapeq.processes builds its server: the same flags, everything else uvicorn's defaults.
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level=args.log_level, access_log=False)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()

"""Page records on every backend: large pages are stored deflated (a fraction of their JSON), small ones and
records written before compression as plain JSON, and every reader gets the same JSON back."""

from __future__ import annotations

import json

from shared import keys
from shared.backends.base import Backends
from shared.models import Page
from shared.stores.tasks import COMPRESSED, TaskStore, decode_page, encode_page

TASK = "0" * 32


def big_page() -> Page:
    text = " ".join(f"paragraph {n} of a long article about tides and harbours" for n in range(400))
    return Page(url="http://127.0.0.1:9/long", status_code=200, markdown=text, text=text)


async def test_a_large_page_is_stored_deflated_and_reads_back_the_same(backends: Backends) -> None:
    tasks = TaskStore(backends.kv)
    page = big_page()
    await tasks.put_page("tn_p", TASK, 0, page)
    raw = await backends.kv.get(keys.page("tn_p", TASK, 0))
    assert raw is not None and raw.startswith(COMPRESSED)
    plain = page.model_dump_json(exclude_none=False)
    assert len(raw) < len(plain) / 4
    assert await tasks.get_page_json("tn_p", TASK, 0) == plain
    listed, _ = await tasks.list_pages_json("tn_p", TASK, cursor=None, limit=10)
    assert [json.loads(p) for p in listed] == [json.loads(plain)]


async def test_small_and_older_plain_records_read_as_they_are(backends: Backends) -> None:
    tasks = TaskStore(backends.kv)
    small = Page(url="http://127.0.0.1:9/", markdown="hi")
    await tasks.put_page("tn_p", TASK, 0, small)
    assert await backends.kv.get(keys.page("tn_p", TASK, 0)) == small.model_dump_json(exclude_none=False)
    older = big_page().model_dump_json()
    await backends.kv.put(keys.page("tn_p", TASK, 1), older)  # as written before compression
    assert await tasks.get_page_json("tn_p", TASK, 1) == older


def test_the_codec_round_trips_any_text() -> None:
    for text in ("", "{}", "é" * 5000, json.dumps({"z1:": "x" * 3000})):
        assert decode_page(encode_page(text)) == text

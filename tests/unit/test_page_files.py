"""Pages written to files: names derived from URLs never leave the directory, never collide, stay readable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrapeq.page_files import file_name, write
from shared.models import Page, PageError

HOSTILE = [
    "http://example.com/../../etc/passwd",
    "http://example.com/%2e%2e/%2e%2e/etc/passwd",
    "http://example.com/a/..%2f..%2fsecret",
    "http://example.com/..",
    "http://example.com/C:\\Windows\\system.ini",
    "http://example.com/" + "x" * 5000,
    "http://example.com/\u202egnp.exe",
    "http://example.com/nul\x00byte",
    "http://[::1]:8080/",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_a_name_is_one_plain_component(url: str) -> None:
    name = file_name(7, url)
    assert "/" not in name and "\\" not in name and ".." not in name and "\x00" not in name
    assert name.startswith("00007-") and name.endswith(".md") and len(name) <= 130
    assert name.isascii()


def test_names_are_readable_and_unique_in_crawl_order() -> None:
    assert file_name(0, "https://docs.example.com/guide/intro.html") == "00000-docs.example.com-guide-intro.md"
    assert file_name(3, "https://example.com/") == "00003-example.com.md"
    assert file_name(1, "https://example.com/a?b=1") != file_name(2, "https://example.com/a?b=1")


def test_a_directory_gets_one_file_per_page_with_content(tmp_path: Path) -> None:
    pages = [
        Page(url="http://example.com/../../escape", title="a\n---\nb", markdown="# A"),
        Page(url="http://example.com/b", error=PageError(code="http_error", message="404")),
        Page(url="http://example.com/c", text="only text"),
    ]
    written = write(pages, str(tmp_path / "out"))
    assert (written.pages, written.without_content) == (2, 1)
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["00000-example.com-escape.md", "00002-example.com-c.md"]
    assert list(tmp_path.iterdir()) == [tmp_path / "out"]  # nothing outside it
    head = files[0].read_text().split("---\n")
    assert head[1].splitlines()[1] == 'title: "a\\n---\\nb"'  # a title cannot end the front matter early
    assert files[1].read_text().endswith("only text")


def test_a_jsonl_file_gets_every_page(tmp_path: Path) -> None:
    pages = [Page(url="http://example.com/a", markdown="# A"), Page(url="http://example.com/b")]
    written = write(pages, str(tmp_path / "pages.jsonl"))
    assert written.pages == 2
    lines = (tmp_path / "pages.jsonl").read_text().splitlines()
    assert [json.loads(line)["url"] for line in lines] == ["http://example.com/a", "http://example.com/b"]
    assert not list(tmp_path.glob("*.part"))

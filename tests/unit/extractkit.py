"""Helpers of the extraction tests: one page to markdown or text, and what every result must satisfy."""

from __future__ import annotations

import re

from consumer.extract import Extracted, extract

BASE = "https://example.com/dir/page.html"


def md(html: str, **kwargs: bool) -> str:
    result = extract(html, base_url=BASE, **kwargs)
    assert result.markdown is not None
    return result.markdown


def text(html: str, **kwargs: bool) -> str:
    result = extract(html, base_url=BASE, want_text=True, **kwargs)
    assert result.text is not None
    return result.text


def assert_clean(result: Extracted) -> None:
    """What holds for every page: tidy whitespace, bounded normalised links, a well-formed hash."""
    for output in (result.markdown, result.text):
        if output is None:
            continue
        assert output == output.strip("\n"), "no blank lines at either end"
        assert not any(line != line.rstrip() for line in output.split("\n")), "no trailing spaces"
    if result.markdown is not None:  # code blocks keep their blank lines; everything else has single ones
        assert "\n\n\n" not in re.sub(r"```.*?```", "code", result.markdown, flags=re.DOTALL)
    assert all(link.startswith(("http://", "https://")) for link in result.links)
    assert len(result.links) == len(set(result.links))
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", result.content_hash)

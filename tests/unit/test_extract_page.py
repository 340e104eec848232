"""Page extraction of whole pages: main-content selection, and an article page end to end."""

from __future__ import annotations

import pytest

from consumer.extract import extract
from tests.unit.extractkit import md

# ---- main content ---------------------------------------------------------------------------------

PAGE = "<header>H</header><nav>N</nav>{body}<aside>A</aside><footer>F</footer>"


@pytest.mark.parametrize(
    ("body", "main_only", "everything"),
    [
        ("<main><p>M</p></main><div>D</div>", "M", "H\n\nN\n\nM\n\nD\n\nA\n\nF"),
        ("<div role='main'><p>R</p></div><div>D</div>", "R", "H\n\nN\n\nR\n\nD\n\nA\n\nF"),
        ("<div>D</div><article><p>Only</p></article>", "Only", "H\n\nN\n\nD\n\nOnly\n\nA\n\nF"),
        ("<article>A1</article><article>A2</article><div>D</div>", "A1\n\nA2\n\nD", None),
        ("<div>D<form>search</form></div><p>P</p>", "D\n\nP", None),
        ("<main><article>in main</article></main><article>other</article>", "in main", None),
        ("<main><nav>toc</nav><p>M</p></main>", "toc\n\nM", None),
        ("<main></main><div>D</div>", "D", None),
        ("<main>M1</main><div>D</div><main>M2</main>", "M1\n\nM2", None),
        ("<main><p>unclosed", "unclosed\n\nA\n\nF", None),  # aside and footer are inside it, as in a DOM
    ],
)
def test_only_main_content_picks_main_then_single_article_then_page_without_boilerplate(
    body: str, main_only: str, everything: str | None
) -> None:
    html = PAGE.format(body=body)
    assert md(html) == main_only
    if everything is not None:
        assert md(html, only_main_content=False) == everything


# ---- a whole page --------------------------------------------------------------------------------

ARTICLE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Crawling Guide #1</title>
<meta name="description" content="How to crawl.">
<link rel="canonical" href="/guide/crawling.html?utm_source=x">
<style>body{margin:0}</style><script>var cfg = {a: "<b>"};</script></head>
<body><header><div class="logo">Site</div><nav><a href="/">Home</a><a href="/blog/">Blog</a></nav></header>
<main><div class="breadcrumbs"><a href="/">Home</a> &rsaquo; <a href="/guide/">Guide</a></div>
<article><h1>Crawling Guide #1</h1><p class="meta">By Ann &middot; 3 min read</p>
<section><h2>Scope</h2><p>Stay on <strong>one host</strong>: <a href="rules.html#robots">rules</a>,
<a href="https://example.org/faq" rel="nofollow">FAQ</a>. Use <code>max_depth</code>.</p>
<blockquote><p>Be polite!</p></blockquote>
<ol><li>Fetch robots.txt</li><li>Seed the frontier<ul><li>sitemap</li><li>links</li></ul></li></ol></section>
<section><h2>Limits</h2><table><caption>Defaults</caption><thead><tr><th>Setting</th><th>Value</th></tr></thead>
<tbody><tr><td>depth</td><td>3</td></tr><tr><td>pages</td><td>100</td></tr></tbody></table>
<pre><code class="language-python">crawl(url, max_depth=3)
    # indented</code></pre>
<figure><img src="/img/flow.png" alt="Crawl flow"><figcaption>The crawl loop.</figcaption></figure></section>
</article></main>
<aside><h3>Related</h3><ul><li><a href="/guide/fetching.html">Fetching</a></li></ul></aside>
<footer><p>&copy; 2024 Site &middot; <a href="mailto:team@example.com">Contact</a></p></footer>
</body></html>"""

ARTICLE_MARKDOWN = """[Home](https://example.com/) › [Guide](https://example.com/guide/)

# Crawling Guide #1

By Ann · 3 min read

## Scope

Stay on **one host**: [rules](https://example.com/guide/rules.html), [FAQ](https://example.org/faq). Use `max_depth`.

> Be polite!

1. Fetch robots.txt
2. Seed the frontier
   - sitemap
   - links

## Limits

Defaults

| Setting | Value |
| --- | --- |
| depth | 3 |
| pages | 100 |

```python
crawl(url, max_depth=3)
    # indented
```

![Crawl flow](https://example.com/img/flow.png)

The crawl loop."""


def test_an_article_page_gives_its_main_content_as_markdown_and_everything_else_as_metadata() -> None:
    result = extract(ARTICLE_PAGE, base_url="https://example.com/guide/crawling.html", want_text=True)
    assert result.markdown == ARTICLE_MARKDOWN
    assert (result.title, result.description, result.language) == ("Crawling Guide #1", "How to crawl.", "en")
    assert result.canonical == "https://example.com/guide/crawling.html"
    assert result.links == [
        "https://example.com/",
        "https://example.com/blog/",
        "https://example.com/guide/",
        "https://example.com/guide/rules.html",
        "https://example.org/faq",
        "https://example.com/guide/fetching.html",
    ]
    assert result.text is not None
    assert result.text.startswith("Home › Guide\n\nCrawling Guide #1\n\nBy Ann · 3 min read\n\nScope\n\n")
    assert "Setting\tValue\ndepth\t3\npages\t100" in result.text

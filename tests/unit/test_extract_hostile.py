"""Page extraction under hostile input: nasty markup, deep nesting, pathological and huge pages, random tag soup."""

from __future__ import annotations

import random
import time

import pytest

from consumer.extract import extract
from tests.unit.extractkit import BASE, assert_clean

# ---- robustness ------------------------------------------------------------------------------------

NASTY = [
    "",
    "<",
    "<<<<>>>>",
    "<a",
    '<a href="',
    "<a href='x",
    "</",
    "</a",
    "</>",
    "<!",
    "<!--",
    "<!-- unterminated",
    "<!DOCTYPE",
    "<![",
    "<![ ",
    "<![1",
    "<![foo[ x",
    "<![CDATA[x",
    "<![if !IE]>x<![endif]>",
    "<?",
    "<?xml",
    "&",
    "&#",
    "&#x;",
    "&#xD800; &#0; &#99999999999; &#x110000;",
    "&amp &lt; &unknown; &#38",
    "\x00<p>\x00a\x00</p>\x00",
    "<p>\ud800 lone surrogate</p>",
    "<p>\r\nwindows\rline\r\n</p><pre>a\r\nb</pre>",
    "<b><i>misnested</b></i></p></div></li></td></tr></table></ul>",
    "</p></div></main></article></table></li>stray ends",
    "<table><td>1<td>2<tr><td>3</table></td></tr>",
    "<table><tr><td><table><tr><td><table>deep",
    "<ul><li>a<li>b<ol><li>c</ul></ol>",
    "<li><li><li>",
    "<script>never closed",
    "<style>never closed",
    "<title>never closed",
    "<pre>never closed <b>bold",
    "<textarea>never closed",
    "<svg><p>breaks out</p>",
    "<button>unclosed <p>x",
    "<noscript><a href='/n'>",
    "<head><p>in head</head><title>late</title>",
    "<html><html lang='xx'><body><body>",
    "<base href='javascript:x'><a href='y'>y</a>",
    "<base href><a href=y>y</a>",
    "<a href='http://[::1'>bad</a><a href='http://a b'>sp</a><img src='http://[x'>",
    "<a href=" + "x" * 5000 + ">long</a>",
    "<ol start='-5'><li value='abc'>x</li><li value='99999999999999999999'>y</li></ol>",
    "<h1><h2><h3>headings in headings",
    "<code><pre>code then pre</pre></code>",
    "<a href='/a'><a href='/b'><a href='/c'>",
    "<div/><p/><br/><img/><a/>",
    "<p " + "a=1 " * 2000 + ">many attributes</p>",
    "<div>" * 600 + "deep" + "</div>" * 600,
    "<b>" * 600 + "bold" + "</b>" * 600,
    "<ul><li>" * 600 + "x",
    "<blockquote>" * 600 + "q",
    "<table><tr><td>" * 600 + "t",
    "<pre>" * 600 + "p",
    "<svg>" * 600 + "s" + "</svg>" * 600 + "after",
]


@pytest.mark.parametrize("html", NASTY)
@pytest.mark.parametrize("only_main_content", [True, False])
def test_hostile_input_never_raises(html: str, only_main_content: bool) -> None:
    result = extract(html, base_url=BASE, want_text=True, only_main_content=only_main_content)
    assert_clean(result)


def test_deep_nesting_costs_no_recursion_and_keeps_the_text() -> None:
    html = "<div>" * 50_000 + "<p>bottom</p>" + "</div>" * 50_000 + "<p>after</p>"
    result = extract(html, base_url=BASE, want_text=True)
    assert result.text == "bottom\n\nafter"


def test_nesting_beyond_the_structural_limit_keeps_lists_bounded() -> None:
    result = extract("<ul><li>" * 50_000 + "x", base_url=BASE)
    assert result.markdown is not None
    assert result.markdown.endswith("- x")
    assert len(result.markdown) < 2 * 512 + 10


@pytest.mark.parametrize(
    "html",
    [
        "<a" * 200_000,
        "</a" * 200_000,
        "<!--" * 200_000,
        "<!x" * 200_000,
        "<?" * 200_000,
        "<![CDATA[" * 100_000,
        "<" * 400_000,
        "&" * 400_000,
        "<p>" + "<a href='/x'>x</a>" * 50_000,
    ],
)
def test_pathological_pages_stay_linear(html: str) -> None:
    started = time.process_time()
    extract(html, base_url=BASE, want_text=True)
    assert time.process_time() - started < 10  # a quadratic rescan of these takes many minutes


def test_five_megabyte_page_is_extracted() -> None:
    paragraph = "<p>Lorem <b>ipsum</b> dolor <a href='/l{}'>sit</a> amet, consectetur adipiscing elit.</p>\n"
    html = "<main>" + "".join(paragraph.format(i % 5000) for i in range(60_000)) + "</main>"
    assert len(html) > 5_000_000
    result = extract(html, base_url=BASE, want_text=True)
    assert len(result.links) == 2000
    assert result.text is not None
    assert result.text.count("\n\n") == 59_999


TAGS = ["p", "div", "b", "i", "a", "ul", "ol", "li", "table", "tr", "td", "th", "pre", "code", "h1", "h3"]
TAGS += ["blockquote", "br", "hr", "img", "script", "style", "main", "article", "nav", "svg", "title", "span"]
TEXT = ["x", " ", "\n", "*", "_", "#", "1.", "-", ">", "|", "`", "&amp;", "&", "<", "[a](b)", "\\", "\t", "é"]
ATTRS = ["", " href='/l'", ' href="javascript:x"', " role=main", " class='language-py'", " src=/i.png", " alt"]


def _tag_soup(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randrange(1, 60)):
        roll = rng.random()
        tag = rng.choice(TAGS)
        if roll < 0.35:
            parts.append(f"<{tag}{rng.choice(ATTRS)}>")
        elif roll < 0.6:
            parts.append(f"</{tag}>")
        elif roll < 0.65:
            parts.append(rng.choice(["<!--", "-->", "<![CDATA[", "]]>", "<!", "<?", "/>", "'", '"']))
        else:
            parts.append(rng.choice(TEXT))
    return "".join(parts)


@pytest.mark.parametrize("seed", range(4))
def test_random_tag_soup_never_raises_and_stays_clean(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(1000):
        html = _tag_soup(rng)
        main_only = rng.random() < 0.5
        result = extract(html, base_url=BASE, want_text=True, only_main_content=main_only, max_links=3)
        assert_clean(result)
        assert len(result.links) <= 3
        text_only = extract(html, base_url=BASE, want_markdown=False, only_main_content=main_only, max_links=3)
        assert text_only.content_hash == result.content_hash

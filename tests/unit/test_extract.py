"""Page extraction: metadata, links, GFM markdown, plain text."""

from __future__ import annotations

import hashlib

import pytest

from consumer.extract import extract
from consumer.extract.page import normalize_language
from tests.unit.extractkit import BASE, md, text

# ---- metadata -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "field", "expected"),
    [
        ("<title> My\n  Title </title>", "title", "My Title"),
        ("<title>A &amp; B</title>", "title", "A & B"),
        ("<head><title>First</title><title>Second</title></head>", "title", "First"),
        ("<p>no title</p>", "title", None),
        ("<title>  </title>", "title", None),
        ('<meta property="og:title" content="From OG">', "title", "From OG"),
        ('<title>Own</title><meta property="og:title" content="From OG">', "title", "Own"),
        ("<svg><title>icon</title></svg><title>Page</title>", "title", "Page"),
        ('<meta name="description" content=" A  page ">', "description", "A page"),
        ('<meta name="Description" content="Cased">', "description", "Cased"),
        ('<meta property="og:description" content="OG">', "description", "OG"),
        ('<meta property="og:description" content="OG"><meta name="description" content="D">', "description", "D"),
        ('<meta name="description">', "description", None),
        ('<html lang="en">', "language", "en"),
        ('<html lang="EN_us">', "language", "en-US"),
        ('<html lang="zh-hant-tw">', "language", "zh-Hant-TW"),
        ('<html lang=""><meta http-equiv="Content-Language" content="de-DE, en">', "language", "de-DE"),
        ('<meta http-equiv="content-language" content="fr">', "language", "fr"),
        ('<html lang="12">', "language", None),
        ('<link rel="canonical" href="/a/?b=2&amp;a=1#frag">', "canonical", "https://example.com/a/?a=1&b=2"),
        ('<link rel="Canonical" href="other.html">', "canonical", "https://example.com/dir/other.html"),
        ('<base href="/base/"><link rel="canonical" href="c">', "canonical", "https://example.com/base/c"),
        ('<link rel="canonical" href="javascript:x()">', "canonical", None),
        ('<link rel="stylesheet" href="/s.css">', "canonical", None),
    ],
)
def test_metadata_comes_from_head_tags(html: str, field: str, expected: str | None) -> None:
    assert getattr(extract(html, base_url=BASE), field) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("en", "en"),
        ("EN-gb", "en-GB"),
        ("pt_BR", "pt-BR"),
        ("sr-latn-rs", "sr-Latn-RS"),
        ("es-419", "es-419"),
        (" de ", "de"),
        ("en-US, fr", "en-US"),
        ("en-*", "en"),
        ("e", None),
        ("", None),
        (None, None),
        ("123", None),
        ("日本", None),
    ],
)
def test_language_tags_are_normalised(value: str | None, expected: str | None) -> None:
    assert normalize_language(value) == expected


# ---- links ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ('<a href="/x">1</a><a href="y.html">2</a>', ["https://example.com/x", "https://example.com/dir/y.html"]),
        ('<a href="../up?b=1&amp;a=2#f">u</a>', ["https://example.com/up?a=2&b=1"]),
        ('<a href="/x#a">1</a><a href="/x#b">2</a><a href="/x">3</a>', ["https://example.com/x"]),
        ('<a href="/b">b</a><a href="/a">a</a><a href="/b">b</a>', ["https://example.com/b", "https://example.com/a"]),
        ('<base href="https://other.org/sub/"><a href="x">x</a>', ["https://other.org/sub/x"]),
        ('<a href="mailto:a@b.c">m</a><a href="javascript:go()">j</a><a href="#top">t</a>', []),
        ('<a href="tel:123">t</a><a href="data:text/html,x">d</a><a href="">e</a><a>no href</a>', []),
        ('<a href="/?utm_source=x">t</a>', ["https://example.com/"]),
        (
            '<nav><a href="/nav">n</a></nav><main><a href="/main">m</a></main>',
            ["https://example.com/nav", "https://example.com/main"],
        ),
        ('<noscript><a href="/nojs">n</a></noscript>', ["https://example.com/nojs"]),
        ('<script>document.write("<a href=/s>s</a>")</script><template><a href="/t">t</a></template>', []),
        ('<pre><a href="/in-pre">p</a></pre>', ["https://example.com/in-pre"]),
        ('<a href="/outer">o <a href="/inner">i</a></a>', ["https://example.com/outer", "https://example.com/inner"]),
        ('<a href=" /spaced ">s</a>', ["https://example.com/spaced"]),
    ],
)
def test_links_are_resolved_deduplicated_and_in_document_order(html: str, expected: list[str]) -> None:
    assert extract(html, base_url=BASE).links == expected


def test_links_are_capped_at_max_links() -> None:
    html = "".join(f'<a href="/p{i}">{i}</a>' for i in range(3000))
    assert extract(html, base_url=BASE, max_links=50).links == [f"https://example.com/p{i}" for i in range(50)]
    assert len(extract(html, base_url=BASE).links) == 2000


def test_links_are_collected_whatever_the_requested_formats() -> None:
    html = '<nav><a href="/n">n</a></nav><main><b><a href="/m">m</a></b></main>'
    variants = [
        extract(html, base_url=BASE, want_markdown=w_md, want_text=w_tx, only_main_content=main)
        for w_md in (True, False)
        for w_tx in (True, False)
        for main in (True, False)
    ]
    assert all(v.links == ["https://example.com/n", "https://example.com/m"] for v in variants)


# ---- markdown -------------------------------------------------------------------------------------

MARKDOWN_CASES = [
    # headings and paragraphs
    ("<h1>One</h1><h2>Two</h2><h6>Six</h6>", "# One\n\n## Two\n\n###### Six"),
    ("<p>a</p><p>b</p>", "a\n\nb"),
    ("<p>a<p>b", "a\n\nb"),
    ("<div>a</div><div>b</div>", "a\n\nb"),
    ("<h2>Title <small>#</small></h2>", "## Title \\#"),
    ("<h3>a<br>b</h3>", "### a b"),
    ("<h2>  </h2><p>x</p>", "x"),
    # whitespace
    ("<p>  a \n\t b  </p>", "a b"),
    ("<p>a<span> b </span>c</p>", "a b c"),
    ("<p>a&nbsp;&nbsp;b</p>", "a\xa0\xa0b"),
    ("<p>x &lt;y&gt; &amp; &copy; &#169; &#xA9; &bogus; &amp</p>", "x \\<y> & © © © &bogus; &"),
    # inline
    ("<p>a <b>bold</b> <strong>strong</strong> <i>it</i> <em>em</em></p>", "a **bold** **strong** *it* *em*"),
    ("<p>x<b> padded </b>y</p>", "x **padded** y"),
    ("<p><b></b><i> </i>x</p>", "x"),
    ("<p><b>a <b>nested</b> b</b></p>", "**a nested b**"),
    ("<p><del>gone</del> <s>old</s></p>", "~~gone~~ ~~old~~"),
    ("<p>use <code>x = 1</code> or <kbd>Ctrl</kbd></p>", "use `x = 1` or `Ctrl`"),
    ("<p><code>a`b</code> <code>``</code></p>", "`` a`b `` ``` `` ```"),
    ("<p><code>*not* _em_ <b>b</b></code></p>", "`*not* _em_ b`"),
    ("<p><b>a<br>b</b></p>", "**a**\\\n**b**"),
    # links and images
    ('<p><a href="/x">link</a></p>', "[link](https://example.com/x)"),
    ('<p><a href="/x"><b>bold</b> link</a></p>', "[**bold** link](https://example.com/x)"),
    ('<p><a href="mailto:a@b.c">mail</a> <a href="tel:+1 23">tel</a></p>', "[mail](mailto:a@b.c) [tel](tel:+1%2023)"),
    ('<p><a href="javascript:void(0)">js</a> <a href="#top">top</a> <a>bare</a></p>', "js top bare"),
    ('<p><a href="/x"></a>empty</p>', "empty"),
    ('<p><a href="/a(b)">p</a></p>', "[p](<https://example.com/a(b)>)"),
    ('<p><img src="/i.png" alt="An [image]"></p>', "![An \\[image\\]](https://example.com/i.png)"),
    ('<p><img src="data:image/png;base64,AAAA" data-src="/lazy.png"></p>', "![](https://example.com/lazy.png)"),
    ('<p><img src="data:image/png;base64,AAAA" alt="x">ok</p>', "ok"),
    (
        '<p>x <a href="/x"><img src="/i.png" alt="i"></a> y</p>',
        "x [![i](https://example.com/i.png)](https://example.com/x) y",
    ),
    (
        '<p><a href="/x"><h3>Card</h3><p>desc</p></a></p>',
        "### [Card](https://example.com/x)\n\n[desc](https://example.com/x)",
    ),
    # escaping: only what would change the rendering
    ("<p>5 * 3 and a_b and _c_ and __init__</p>", "5 \\* 3 and a_b and \\_c\\_ and \\_\\_init\\_\\_"),
    (
        "<p>see [1] and [x](y) and `tick` and C:\\dir and \\*</p>",
        "see [1] and [x\\](y) and \\`tick\\` and C:\\dir and \\\\\\*",
    ),
    ("<p># no</p><p>#hashtag</p><p>1. no</p><p>2024 year</p>", "\\# no\n\n#hashtag\n\n1\\. no\n\n2024 year"),
    (
        "<p>- no</p><p>+ no</p><p>&gt; no</p><p>---</p><p>===</p><p>a - b</p>",
        "\\- no\n\n\\+ no\n\n\\> no\n\n\\---\n\n\\===\n\na - b",
    ),
    # breaks and rules
    ("<p>a<br>b<br/>c</p>", "a\\\nb\\\nc"),
    ("<p>a<br><br>b<br></p>", "a\n\nb"),
    ("<p>a<br>- b</p>", "a\\\n\\- b"),
    ("<p>a</p><hr><p>b</p>", "a\n\n---\n\nb"),
    ("<p>a</br>b</p>", "a\\\nb"),
    # pre
    ("<pre>\n  x = 1\n\n    y = 2   \n</pre>", "```\n  x = 1\n\n    y = 2\n```"),
    ('<pre><code class="hljs language-python">print(1)</code></pre>', "```python\nprint(1)\n```"),
    ('<pre class="lang-js">a &lt; b</pre>', "```js\na < b\n```"),
    ("<pre>a<b>b</b><span>c</span><br>d</pre>", "```\nabc\nd\n```"),
    ("<pre>```\ninner\n```</pre>", "````\n```\ninner\n```\n````"),
    ("<pre><div>line</div>\n<div>two</div></pre><p>after</p>", "```\nline\ntwo\n```\n\nafter"),
    ("<p>x</p><pre>   </pre><p>y</p>", "x\n\ny"),
    # lists
    ("<ul><li>a</li><li>b</li></ul>", "- a\n- b"),
    ("<ol><li>a<li>b<li>c</ol>", "1. a\n2. b\n3. c"),
    ('<ol start="9"><li>a</li><li>b</li></ol>', "9. a\n10. b"),
    ('<ol><li value="5">a</li><li>b</li></ol>', "5. a\n6. b"),
    ("<ul><li>a<ul><li>b</li><li>c</li></ul></li><li>d</li></ul>", "- a\n  - b\n  - c\n- d"),
    ("<ol><li>a<ol><li>b<ul><li>c</li></ul></li></ol></li></ol>", "1. a\n   1. b\n      - c"),
    (
        "<ol><li>x</li><li>y</li><li>z</li><li>w</li><li>v</li><li>u</li><li>t</li><li>s</li><li>r</li>"
        "<li>q<ul><li>deep</li></ul></li></ol>",
        "1. x\n2. y\n3. z\n4. w\n5. v\n6. u\n7. t\n8. s\n9. r\n10. q\n    - deep",
    ),
    ("<ul><li><p>one</p><p>two</p></li><li><div>three</div></li></ul>", "- one\n\n  two\n- three"),
    ("<ul><li>a</li><ul><li>sub</li></ul><li>b</li></ul>", "- a\n  - sub\n- b"),
    ("<p>before</p><ul><li>a</li></ul><p>after</p>", "before\n\n- a\n\nafter"),
    ("<ul><li>a<pre>code</pre></li></ul>", "- a\n\n  ```\n  code\n  ```"),
    ("<li>stray</li>", "- stray"),
    ("<ul><li></li><li>b</li></ul>", "- b"),
    ("<ul><li>a</li><li><p></p><h3></h3>b</li></ul>", "- a\n- b"),
    # blockquotes
    ("<blockquote>q</blockquote>", "> q"),
    ("<blockquote><p>a</p><p>b</p></blockquote>", "> a\n>\n> b"),
    ("<blockquote>a<blockquote>b</blockquote></blockquote>", "> a\n>\n> > b"),
    ("<blockquote><ul><li>x</li></ul></blockquote>", "> - x"),
    ("<ul><li>a<blockquote>q</blockquote></li></ul>", "- a\n\n  > q"),
    # tables
    (
        "<table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td>2</td></tr></table>",
        "| A | B |\n| --- | --- |\n| 1 | 2 |",
    ),
    (
        "<table><thead><tr><th>a|b</th><th>c</th></tr></thead><tbody><tr><td>x<br>y</td><td><p>p1</p><p>p2</p></td>"
        "</tr></tbody></table>",
        "| a\\|b | c |\n| --- | --- |\n| x y | p1 p2 |",
    ),
    (
        "<table><tr><td>1<td>2<td>3<tr><td>4<tr><td>5<td>6</table>",
        "| 1 | 2 | 3 |\n| --- | --- | --- |\n| 4 |  |  |\n| 5 | 6 |  |",
    ),
    (
        "<table><caption>Prices</caption><tr><td><b>a</b></td><td><a href='/x'>b</a></td></tr></table>",
        "Prices\n\n| **a** | [b](https://example.com/x) |\n| --- | --- |",
    ),
    ("<table><tr><td>only</td></tr><tr><td>column</td></tr></table>", "only\n\ncolumn"),
    (
        "<table><tr><td><table><tr><td>i1</td><td>i2</td></tr></table></td><td>outer</td></tr></table>",
        "| i1 | i2 |\n| --- | --- |\n\nouter",
    ),
    ("<table role='presentation'><tr><td>nav</td><td>body</td></tr></table>", "nav\n\nbody"),
    ("<table></table><p>x</p>", "x"),
    ("<table>stray<tr><td>a</td><td>b</td></tr></table>", "stray\n\n| a | b |\n| --- | --- |"),
    ("<td>stray cell</td>", "stray cell"),
    # skipped content
    ("<script>var x = '<p>no</p>';</script><style>p{}</style><p>yes</p>", "yes"),
    ("<noscript>enable js</noscript><template><p>t</p></template><p>yes</p>", "yes"),
    ("<svg><text>svg</text><title>t</title></svg><math><mi>x</mi></math><p>yes</p>", "yes"),
    ("<iframe>frame</iframe><object>obj</object><canvas>cv</canvas><p>yes</p>", "yes"),
    ("<form><select><option>o</option></select><button>Go</button><textarea>t</textarea>label</form>", "label"),
    ("<p>a<svg><path d='x'/></svg>b</p>", "ab"),
    ("<div><button>unclosed</div><p>yes</p>", "yes"),
    ("<head><title>T</title><style>x</style></head><body><p>body</p></body>", "body"),
    ("<head><title>T</title></head>loose text", "loose text"),
    ("<!-- comment --><p>a<!-- inner -->b</p><!DOCTYPE html><?pi x?>", "ab"),
    ("<p>a<![CDATA[hidden]]>b</p>", "ab"),
]


@pytest.mark.parametrize(("html", "expected"), MARKDOWN_CASES)
def test_markdown_is_github_flavoured(html: str, expected: str) -> None:
    assert md(html, only_main_content=False) == expected


# ---- plain text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<h1>T</h1><p>a <b>b</b> <a href='/x'>c</a></p><p>d</p>", "T\n\na b c\n\nd"),
        ("<div>a</div><div>b</div><section>c</section>", "a\nb\nc"),
        ("<ul><li>one</li><li>two<ol><li>three</li></ol></li></ul><p>x</p>", "one\ntwo\nthree\n\nx"),
        ("<p>a<br>b</p>", "a\nb"),
        ("<table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td></td></tr></table>", "A\tB\n1"),
        ("<pre>  keep\n    indent</pre>", "  keep\n    indent"),
        ("<p>x <img src='/i.png' alt='alt'> y</p><hr><p>z</p>", "x y\n\nz"),
        ("<p>5 * 3 &amp; _a_ # [x](y)</p>", "5 * 3 & _a_ # [x](y)"),
        ("<blockquote><p>q</p></blockquote>", "q"),
    ],
)
def test_text_is_the_same_content_without_markup(html: str, expected: str) -> None:
    assert text(html, only_main_content=False) == expected


def test_content_hash_is_sha256_of_the_text_whatever_the_requested_formats() -> None:
    html = "<main><h1>T</h1><p>a <b>b</b></p><ul><li>c</li></ul></main><footer>f</footer>"
    full = extract(html, base_url=BASE, want_text=True)
    assert full.text is not None
    assert full.content_hash == "sha256:" + hashlib.sha256(full.text.encode()).hexdigest()
    for want_markdown in (True, False):
        for want_text in (True, False):
            other = extract(html, base_url=BASE, want_markdown=want_markdown, want_text=want_text)
            assert other.content_hash == full.content_hash


@pytest.mark.parametrize(
    "html",
    [
        "<h2>H</h2><figure><img src='/a.png'><figcaption>Cap</figcaption></figure><p>P</p>",
        "<ul><li><img src='/a.png'><p>after image</p></li><li>b</li></ul>",
        "<table><tr><td><img src='/a.png'></td><td>x</td></tr></table><p><img src='/b.png'></p>",
    ],
)
def test_text_does_not_depend_on_whether_markdown_is_wanted(html: str) -> None:
    with_markdown = extract(html, base_url=BASE, want_text=True)
    without = extract(html, base_url=BASE, want_text=True, want_markdown=False)
    assert (without.text, without.content_hash) == (with_markdown.text, with_markdown.content_hash)


def test_markdown_and_text_are_none_unless_requested() -> None:
    result = extract("<p>x</p>", base_url=BASE, want_markdown=False, want_text=False)
    assert (result.markdown, result.text) == (None, None)
    result = extract("<p>x</p>", base_url=BASE, want_markdown=True, want_text=True)
    assert (result.markdown, result.text) == ("x", "x")

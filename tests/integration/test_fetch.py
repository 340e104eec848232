"""The page fetcher against loopback servers (no other network is ever touched): pages and redirects, bodies
(encodings, caps, the deadline), content types and statuses. Its network side is `test_fetch_network.py`."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib

import pytest

from shared.errors import (
    BlockedAddress,
    FetchTimeout,
    TooLarge,
    TooManyRedirects,
    UnsupportedContentType,
    UnsupportedEncoding,
)
from tests.fixtures.httpserver import LoopbackServer
from tests.integration.fetchkit import (
    HTML,
    PAGE,
    MiB,
    blanks_gzipped,
    endless,
    fetch,
    gzipped,
    make_settings,
    open_fetcher,
)

# --- plain pages and redirects


async def test_fetches_a_page_with_its_metadata(http_server: LoopbackServer) -> None:
    url = http_server.route("/page", headers=HTML, body=PAGE)
    result = await fetch(url)
    assert (result.status_code, result.content_type, result.charset, result.body) == (
        200,
        "text/html",
        "utf-8",
        PAGE,
    )
    assert (result.url, result.final_url, result.redirects) == (url, url, 0)
    assert result.headers["content-type"] == "text/html; charset=utf-8"
    hit = http_server.hits_for("/page")[0]
    assert hit.headers["accept-encoding"] == "gzip, deflate"
    assert hit.headers["user-agent"].startswith("scrapeq/")
    assert hit.headers["accept"].startswith("text/html")


async def test_follows_a_redirect_chain_to_the_final_url(http_server: LoopbackServer) -> None:
    start = http_server.route("/a", status=302, headers={"Location": "/b?utm_source=x"})
    http_server.route("/b", status=301, headers={"Location": http_server.url("/c")})
    http_server.route("/c", status=308, headers={"Location": "d"})
    final = http_server.route("/d", headers=HTML, body=PAGE)
    result = await fetch(start)
    assert (result.final_url, result.redirects, result.url, result.body) == (final, 3, start, PAGE)
    assert [hit.path for hit in http_server.hits] == ["/a", "/b", "/c", "/d"]  # tracking query dropped


async def test_redirect_loop_is_refused(http_server: LoopbackServer) -> None:
    http_server.route("/x", status=302, headers={"Location": "/y"})
    http_server.route("/y", status=307, headers={"Location": "/x"})
    with pytest.raises(TooManyRedirects, match="loop"):
        await fetch(http_server.url("/x"))
    assert len(http_server.hits) == 2


async def test_too_many_redirects(http_server: LoopbackServer) -> None:
    for n in range(10):
        http_server.route(f"/r{n}", status=302, headers={"Location": f"/r{n + 1}"})
    with pytest.raises(TooManyRedirects, match="more than 3"):
        await fetch(http_server.url("/r0"), make_settings(fetch_max_redirects=3))
    assert len(http_server.hits) == 4


@pytest.mark.parametrize(
    "target",
    ["file:///etc/passwd", "ftp://127.0.0.1/", "gopher://127.0.0.1:70/", "data:,x", "javascript:alert(1)"],
)
async def test_redirect_to_another_scheme_is_refused(http_server: LoopbackServer, target: str) -> None:
    url = http_server.route("/go", status=302, headers={"Location": target})
    with pytest.raises(BlockedAddress, match="http"):
        await fetch(url)


async def test_redirect_to_a_private_address_is_refused_at_the_hop(http_server: LoopbackServer) -> None:
    url = http_server.route("/go", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    with pytest.raises(BlockedAddress, match=r"169\.254\.169\.254"):
        await fetch(url)


async def test_redirect_without_location_is_a_result(http_server: LoopbackServer) -> None:
    result = await fetch(http_server.route("/300", status=300, headers=HTML, body=PAGE))
    assert (result.status_code, result.redirects, result.body) == (300, 0, PAGE)


# --- bodies: encodings, caps, deadline


async def test_gzip_body_is_inflated(http_server: LoopbackServer) -> None:
    url = http_server.route("/", headers={**HTML, "Content-Encoding": "gzip"}, body=gzipped(PAGE))
    assert (await fetch(url)).body == PAGE


@pytest.mark.parametrize("layers", [1, 2])
async def test_large_compressed_body_is_inflated_completely(http_server: LoopbackServer, layers: int) -> None:
    page = PAGE + b" " * 700_000 + b"".join(b"line %d\n" % n for n in range(20_000)) + PAGE
    encoding = ", ".join(["gzip"] * layers)
    url = http_server.route("/", headers={**HTML, "Content-Encoding": encoding}, body=gzipped(page, layers))
    assert (await fetch(url)).body == page


async def test_stacked_gzip_is_inflated_layer_by_layer(http_server: LoopbackServer) -> None:
    url = http_server.route("/", headers={**HTML, "Content-Encoding": "gzip, x-gzip"}, body=gzipped(PAGE, 2))
    assert (await fetch(url)).body == PAGE


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
async def test_deflate_in_either_framing_is_inflated(http_server: LoopbackServer, wbits: int) -> None:
    engine = zlib.compressobj(6, zlib.DEFLATED, wbits)
    body = engine.compress(PAGE) + engine.flush()
    url = http_server.route("/", headers={**HTML, "Content-Encoding": "deflate"}, body=body)
    assert (await fetch(url)).body == PAGE


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip, gzip, gzip", gzipped(PAGE, 3)), ("br", PAGE), ("zstd", PAGE), ("compress", PAGE)],
)
async def test_unsupported_or_too_deep_encodings_are_refused(
    http_server: LoopbackServer, encoding: str, body: bytes
) -> None:
    url = http_server.route("/", headers={**HTML, "Content-Encoding": encoding}, body=body)
    with pytest.raises(UnsupportedEncoding):
        await fetch(url)


@pytest.mark.parametrize(("layers", "size"), [(1, 50 * MiB), (2, 100 * MiB)], ids=["gzip", "gzip-gzip"])
async def test_gzip_bomb_stops_at_the_cap_with_bounded_memory(
    http_server: LoopbackServer, layers: int, size: int
) -> None:
    bomb = blanks_gzipped(size)
    if layers == 2:
        bomb = gzip.compress(bomb)
    encoding = ", ".join(["gzip"] * layers)
    url = http_server.route("/", headers={**HTML, "Content-Encoding": encoding}, body=bomb)
    settings = make_settings(fetch_max_body_bytes=MiB)
    async with open_fetcher(settings) as fetcher:
        tracemalloc.start()
        try:
            with pytest.raises(TooLarge):
                await fetcher.fetch(url)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(bomb) < 200 * 1024
    assert peak < MiB + MiB, f"peak {peak / MiB:.1f} MiB"  # the cap, plus well under a MiB of overhead


async def test_content_length_above_the_cap_is_refused_before_reading(http_server: LoopbackServer) -> None:
    headers = {**HTML, "Content-Length": str(10 * 1024**3)}
    url = http_server.route("/", headers=headers, body=endless(b"x" * 65536))
    with pytest.raises(TooLarge, match="Content-Length"):
        await fetch(url)


async def test_endless_chunked_body_is_cut_at_the_cap(http_server: LoopbackServer) -> None:
    url = http_server.route("/", headers=HTML, body=endless(b"x" * 65536))
    with pytest.raises(TooLarge, match="body exceeds"):
        await fetch(url, make_settings(fetch_max_body_bytes=256 * 1024))


async def test_body_exactly_at_the_cap_is_accepted(http_server: LoopbackServer) -> None:
    url = http_server.route("/", headers={**HTML, "Content-Encoding": "gzip"}, body=gzipped(b"a" * 4096))
    assert len((await fetch(url, make_settings(fetch_max_body_bytes=4096))).body) == 4096


async def test_slow_trickle_hits_the_whole_page_deadline(http_server: LoopbackServer) -> None:
    url = http_server.route("/", headers=HTML, body=endless(b"x", delay_s=0.05))
    settings = make_settings(fetch_total_timeout_s=1.0, fetch_read_timeout_s=5.0)
    started = time.monotonic()
    with pytest.raises(FetchTimeout, match="within 1 s"):
        await fetch(url, settings)
    assert time.monotonic() - started < 2.0


# --- content types and statuses


async def test_image_is_refused_without_reading_the_body(http_server: LoopbackServer) -> None:
    url = http_server.route("/img", headers={"Content-Type": "image/png"}, body=endless(b"\x89PNG" * 16384))
    with pytest.raises(UnsupportedContentType, match="image/png"):
        await fetch(url)


async def test_accept_can_widen_the_types(http_server: LoopbackServer) -> None:
    url = http_server.route("/robots.txt", headers={"Content-Type": "application/octet-stream"}, body=b"User-agent: *")
    result = await fetch(url, accept={"application/octet-stream"})
    assert result.body == b"User-agent: *"


async def test_error_status_is_a_result_not_an_exception(http_server: LoopbackServer) -> None:
    url = http_server.route("/missing", status=404, headers=HTML, body=b"<html>gone</html>")
    result = await fetch(url)
    assert (result.status_code, result.body) == (404, b"<html>gone</html>")


async def test_error_status_with_a_type_not_accepted_skips_the_body(http_server: LoopbackServer) -> None:
    url = http_server.route("/err", status=503, headers={"Content-Type": "application/json"}, body=b"{}")
    result = await fetch(url)
    assert (result.status_code, result.content_type, result.body) == (503, "application/json", b"")


@pytest.mark.parametrize(
    ("body", "sniffed"),
    [
        (b"\n  <!DOCTYPE html><html><body>x</body></html>", "text/html"),
        (b"\xef\xbb\xbf<html lang=en>" + b"x" * 1000, "text/html"),
        (b"<p>short", "text/html"),
        (b"just some words\n" * 100, "text/plain"),
    ],
)
async def test_missing_content_type_is_sniffed(http_server: LoopbackServer, body: bytes, sniffed: str) -> None:
    result = await fetch(http_server.route("/", body=body))
    assert (result.content_type, result.body) == (sniffed, body)


@pytest.mark.parametrize("media", ["text/html", "text/plain", "application/xhtml+xml"])
async def test_binary_data_under_a_text_label_is_refused(http_server: LoopbackServer, media: str) -> None:
    url = http_server.route("/", headers={"Content-Type": media}, body=endless(b"\x89PNG\r\n\x1a\n\x00\x00" * 4096))
    with pytest.raises(UnsupportedContentType, match="application/octet-stream"):
        await fetch(url)


@pytest.mark.parametrize("charset", ["utf-16", "UTF-16LE", "utf-32"])
async def test_wide_text_with_nul_bytes_is_not_taken_for_binary(http_server: LoopbackServer, charset: str) -> None:
    codec = {"utf-16": "utf-16-le", "UTF-16LE": "utf-16-le", "utf-32": "utf-32-le"}[charset]
    body = "<html><body>wide text</body></html>".encode(codec) * 40  # no BOM: only the label says so
    url = http_server.route("/", headers={"Content-Type": f"text/html; charset={charset}"}, body=body)
    assert (await fetch(url)).body == body


async def test_missing_content_type_with_binary_data_is_refused(http_server: LoopbackServer) -> None:
    url = http_server.route("/", body=endless(b"\x00\x01\x02\x03" * 1024))
    with pytest.raises(UnsupportedContentType, match="application/octet-stream"):
        await fetch(url)

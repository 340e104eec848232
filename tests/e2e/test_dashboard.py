"""The dashboard in a real headless Chromium against `scrapeq dev` on loopback: sign-in, a crawl's bar reaching 100 %,
a rendered page, the usage chart, a hostile title shown as text, no CSP violation, nothing leaving 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import GENEROUS_LIMITS, Cli
from tests.fixtures.versioned import Version, VersionedSite

# Generous: on a fresh machine the first run installs Chromium (a few minutes); the test itself takes ~20 s.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("dashboard_driver.mjs")
CHROMIUM = Path("/usr/bin/chromium")
#: Set it to a directory to keep the screenshots of each step (else they go to the test's tmp dir).
SCREENSHOTS_ENV = "SCRAPEQ_DASHBOARD_SCREENSHOTS"
HOSTILE_TITLE = "<script>alert(1)</script>"
PAGES = 10
ASSETS = ("/dashboard", "/dashboard/app.js", "/dashboard/pages.js", "/dashboard/markdown.js", "/dashboard/chart.js")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def ensure_chromium() -> Path:
    """Debian's Chromium, installed with apt-get when missing (CI runs as root on a fresh machine)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.skip("Chromium is not installed and apt-get is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=780, check=False)
        assert done.returncode == 0, f"{' '.join(command)} failed: {done.stderr[-2000:]}"
    assert CHROMIUM.exists(), "apt-get installed chromium but /usr/bin/chromium is missing"
    return CHROMIUM


def site_pages() -> dict[str, Version]:
    # First a link that answers 404: one page error, for the errors chart.
    links = '<a href="/gone.html">gone</a> '
    links += "".join(f'<a href="/p{n}.html">page {n}</a> ' for n in range(PAGES - 3))
    links += '<a href="/guide.html">guide</a> <a href="/hostile.html">hostile</a>'
    guide = (
        "<h1>Guide</h1><p>Some <strong>bold</strong> words and <a href='https://example.com/doc'>a link</a>, "
        "<a href='javascript:alert(3)'>a trap</a>.</p><ul><li>first item</li><li>second item</li></ul>"
        "<p>&lt;img src=x onerror=alert(4)&gt; stays text.</p>"
    )
    hostile = f"<h1>{HOSTILE_TITLE.replace('<', '&lt;')}</h1><p>&lt;b&gt;not bold&lt;/b&gt;</p>"
    served = {
        "/index.html": Version(f"<html><head><title>Home</title></head><body><main>{links}</main></body></html>"),
        "/guide.html": Version(f"<html><head><title>Guide</title></head><body><main>{guide}</main></body></html>"),
        "/hostile.html": Version(
            f"<html><head><title>{HOSTILE_TITLE.replace('<', '&lt;')}</title></head>"
            f"<body><main>{hostile}</main></body></html>"
        ),
    }
    for n in range(PAGES - 3):
        body = f"<h1>Page {n}</h1><p>text of page {n}</p>"
        served[f"/p{n}.html"] = Version(
            f"<html><head><title>P{n}</title></head><body><main>{body}</main></body></html>"
        )
    return served


def drive(config: dict[str, Any], log: Path) -> dict[str, Any]:
    env = {**os.environ, "DASHBOARD_DRIVER": json.dumps(config)}
    done = subprocess.run(
        ["node", str(DRIVER)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=150, check=False
    )
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    assert done.returncode == 0, f"the driver failed ({log}): {done.stderr[-3000:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the driver printed no result ({log})"
    seen: dict[str, Any] = json.loads(lines[-1])
    return seen


def test_the_dashboard_in_a_real_browser(tmp_path: Path) -> None:
    chromium = ensure_chromium()
    if shutil.which("node") is None or not (ROOT / "node_modules/playwright-core/package.json").exists():
        pytest.fail("node_modules/playwright-core is missing: run `make test` (or `npm install`) first")
    shots = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    cli = Cli(tmp_path / "data", SCRAPEQ_CRAWL_CONCURRENCY="2", **GENEROUS_LIMITS)
    key = cli.new_key("dashboard", "docs")
    with VersionedSite(delay_s=0.5) as site:
        site.pages = site_pages()
        try:
            base = cli.start_http("dev", log=tmp_path / "dev.log")
            for path in ASSETS:
                answer = httpx.get(base + path)
                assert answer.status_code == 200, path
                assert answer.headers["content-security-policy"] == CSP, path
                assert answer.headers["x-content-type-options"] == "nosniff"
                assert answer.headers["referrer-policy"] == "no-referrer"
            config = {
                "base": base,
                "key": key,
                "wrong_key": key[:-1] + ("A" if key[-1] != "A" else "B"),
                "kb": "docs",
                "url": site.url("/index.html"),
                "limit": PAGES,
                "hostile_title": HOSTILE_TITLE,
                "chromium": str(chromium),
                "profile": str(tmp_path / "profile"),
                "shots": str(shots),
            }
            seen = drive(config, tmp_path / "driver.log")
        finally:
            cli.stop_all()
    assert "failure" not in seen, seen.get("failure")
    steps = seen["steps"]

    # Served with the strict policy; no violation, no script error, no dialog (the hostile title never ran).
    assert steps["headers"]["content-security-policy"] == CSP
    assert seen["violations"] == []
    assert not [m for m in seen["console"] if "Content Security Policy" in m["text"]]
    # The one error Chromium logs is the wrong key's refused request, which the page shows (below).
    errors = [m["text"] for m in seen["console"] if m["type"] == "error"]
    assert errors == ["Failed to load resource: the server responded with a status of 401 (Unauthorized)"], errors
    assert seen["page_errors"] == []
    assert seen["dialogs"] == []

    # A wrong key: the service's 401 problem shown, still signed out, nothing stored.
    wrong = steps["wrong_key"]
    assert "(401)" in wrong["error"], wrong
    assert wrong["app_hidden"] is True
    assert wrong["storage"]["session"] is None and wrong["storage"]["local_length"] == 0

    # The key lives in this tab's session storage only, never in the URL or local storage.
    signed_in = steps["signed_in"]["storage"]
    assert signed_in["session"] == key and signed_in["local_length"] == 0
    assert steps["signed_in"]["key_field"] == ""
    assert key not in signed_in["href"] and not [url for url in seen["requests"] if key in url]

    # Live progress: values between 0 and 100 seen while it ran, then a full bar.
    percents = seen["percents"]
    assert [p for p in percents if 0 < p < 100], percents
    assert percents == sorted(percents), percents
    assert steps["completed"] == {"status": "completed", "percent": 100, "bar": 100, "text": "100 %"}

    # The usage chart: one bar a day, today's pages among them.
    usage = steps["usage"]
    assert len(usage["bars"]) >= 7 and max(usage["bars"]) >= PAGES, usage
    assert max(usage["heights"]) > 0
    assert "http_status" in usage["error_chart"], usage

    # Pages: markdown rendered with known tags only; links http(s) only, with rel noopener noreferrer.
    assert HOSTILE_TITLE in steps["page_titles"] and "Guide" in steps["page_titles"]
    rendered = steps["rendered"]
    assert rendered["h1"] == "Guide"
    assert {"h1", "p", "strong", "ul", "li", "a"} <= set(rendered["tags"]), rendered["tags"]
    assert set(rendered["tags"]) <= {"h1", "h2", "h3", "p", "strong", "em", "ul", "ol", "li", "a", "code", "br"}
    assert rendered["items"] == 2
    assert {"href": "https://example.com/doc", "rel": "noopener noreferrer", "text": "a link"} in rendered["links"]
    assert all(link["href"].startswith(("http://", "https://")) for link in rendered["links"]), rendered["links"]
    assert "<img src=x onerror=alert(4)>" in rendered["text"]

    # The hostile title shows as text; the only scripts are the dashboard's own files.
    hostile = steps["hostile"]
    assert hostile["title"] == HOSTILE_TITLE
    assert "<b>not bold</b>" in hostile["body_text"]
    assert sorted(hostile["scripts"]) == sorted(path for path in ASSETS if path.endswith(".js"))

    # Signing out forgets the key and the tenant's rows.
    assert steps["signed_out"] == {
        "storage": {**steps["signed_out"]["storage"], "session": None, "session_length": 0, "local_length": 0},
        "rows": 0,
    }

    # Nothing left 127.0.0.1 (the data: favicon is no request to anywhere).
    hosts = {urlsplit(url).hostname for url in seen["requests"] if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, hosts
    assert len(list(shots.glob("*.png"))) >= 8

"""The dashboard's files as served: the strict headers on each, no inline script or style in the page, no HTML
parsing of data or eval in the scripts, and scripts node accepts (the browser test drives them for real)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from producer.app import create_app
from producer.dashboard.serving import ASSETS, CONTENT_SECURITY_POLICY
from shared.settings import Settings

SCRIPTS = [path for path in ASSETS if path.endswith(".js")]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("dashboard"))
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("path", list(ASSETS))
def test_each_file_is_served_with_the_strict_headers_and_no_key(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == ASSETS[path].media_type
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.text == ASSETS[path].body


def test_the_policy_is_the_agreed_one() -> None:
    directives = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert directives == {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "connect-src": "'self'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }


def test_the_page_has_no_inline_script_style_or_handler() -> None:
    html = ASSETS["/dashboard"].body
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert sorted(re.search(r'src="([^"]+)"', attrs)[1] for attrs, _ in scripts) == sorted(SCRIPTS)  # type: ignore[index]
    assert all(body == "" for _, body in scripts)
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from another origin
    # The key field has no name: without the script, a submit would send nothing.
    assert re.search(r'<input id="api-key"(?![^>]*\bname=)[^>]*>', html)


@pytest.mark.parametrize("path", SCRIPTS)
def test_scripts_never_parse_data_as_html_nor_eval(path: str) -> None:
    source = ASSETS[path].body
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert banned not in source, banned
    assert not re.search(r"setTimeout\(\s*['\"`]", source)
    assert "localStorage" not in source


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("path", SCRIPTS)
def test_node_accepts_each_script(path: str, tmp_path: Path) -> None:
    script = tmp_path / "script.js"
    script.write_text(ASSETS[path].body, encoding="utf-8")
    done = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr

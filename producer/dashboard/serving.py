"""`GET /dashboard` and its script and style files, each answered with a strict Content-Security-Policy; the
assets are Python strings, so the producer Worker's bundle carries them like any module."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.responses import Response

from producer.dashboard import app_script, chart_script, markdown_script, markup, pages_script

#: No inline script or style, no eval, nothing from another origin, never framed, forms only to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # The assets are small and change with the service: always revalidated, never stale after an upgrade.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: str
    media_type: str


ASSETS = {
    "/dashboard": Asset(markup.INDEX_HTML, "text/html; charset=utf-8"),
    "/dashboard/style.css": Asset(markup.STYLE_CSS, "text/css; charset=utf-8"),
    "/dashboard/markdown.js": Asset(markdown_script.MARKDOWN_JS, "text/javascript; charset=utf-8"),
    "/dashboard/chart.js": Asset(chart_script.CHART_JS, "text/javascript; charset=utf-8"),
    "/dashboard/pages.js": Asset(pages_script.PAGES_JS, "text/javascript; charset=utf-8"),
    "/dashboard/app.js": Asset(app_script.APP_JS, "text/javascript; charset=utf-8"),
}

router = APIRouter(tags=["dashboard"])


def asset_response(path: str) -> Response:
    asset = ASSETS[path]
    return Response(asset.body, media_type=asset.media_type, headers=SECURITY_HEADERS)


def _route(path: str) -> None:
    async def serve() -> Response:
        return asset_response(path)

    serve.__name__ = "dashboard_" + (path.rsplit("/", 1)[-1].replace(".", "_") or "index")
    router.add_api_route(path, serve, methods=["GET"], include_in_schema=False)


for _path in ASSETS:
    _route(_path)

"""Fetching one page: redirects by hand, a whole-page deadline, errors translated into `FetchError`s;
HTTP error statuses are results, not exceptions; the body's bounds are `body`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Container, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import httpx

from consumer.fetch.addresses import AddressRefused
from consumer.fetch.body import PAGE_TYPES, BodyLimits, admit, media_type, read_body
from shared import telemetry
from shared.errors import (
    BadResponse,
    BlockedAddress,
    ConnectFailed,
    FetchError,
    FetchTimeout,
    TooManyRedirects,
)
from shared.urls import SCHEMES, host_of, normalize

if TYPE_CHECKING:  # annotations only: the Worker's fetch path (and its Pyodide tests) runs without pydantic
    from shared.settings import Settings

log = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_LOCATION_NOISE = re.compile("[\t\n\r]")


@dataclass(frozen=True)
class FetchResult:
    url: str
    final_url: str
    status_code: int
    #: Lower-case names; repeated headers joined with ", ".
    headers: dict[str, str]
    #: Media type, lower-case, without parameters; sniffed when the server named none.
    content_type: str
    charset: str | None
    #: Decoded (inflated) body; empty when an error status came with a type the caller does not accept.
    body: bytes
    redirects: int


class Fetcher:
    """Fetches pages through an injected (guarded) client; `fetch` never raises anything but `FetchError`s."""

    def __init__(self, client: httpx.AsyncClient, *, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def fetch(
        self,
        url: str,
        *,
        accept: Container[str] = PAGE_TYPES,
        max_redirects: int | None = None,
        truncate_at: int | None = None,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FetchResult:
        """Fetch `url`, following at most `max_redirects` hops (default: the setting).

        `truncate_at`: keep only that many (inflated) bytes of the body and stop reading, instead of failing
        with `TooLarge` past the body cap (robots.txt: only the first 500 KiB are parsed anyway). `headers`: sent
        to `url` only, not to a redirect's target (conditional-request validators belong to the URL they came from).
        """
        # httpx's timeouts are per network operation; only this deadline stops a slow trickle (httpx#1450).
        # `timeout_s`: what is left of the page's budget, when that is less.
        deadline = self._settings.fetch_total_timeout_s
        if timeout_s is not None:
            deadline = max(0.0, min(deadline, timeout_s))
        limits = BodyLimits(
            accept=accept,
            max_redirects=self._settings.fetch_max_redirects if max_redirects is None else max_redirects,
            max_bytes=truncate_at or self._settings.fetch_max_body_bytes,
            truncate=truncate_at is not None,
        )
        try:
            async with asyncio.timeout(deadline):
                return await self._follow(url, limits, headers)
        except TimeoutError:
            raise FetchTimeout(f"page not fetched within {deadline:.3g} s") from None

    async def _follow(self, url: str, limits: BodyLimits, headers: Mapping[str, str] | None) -> FetchResult:
        # Redirects by hand: every hop is re-validated here and address-checked by the client's backend,
        # and nothing (extensions, auth) is carried across hosts as httpx's own following would.
        current = _fetchable(url, what="URL")
        seen = {current}
        redirects = 0
        while True:
            async with self._response(current, headers if redirects == 0 else None) as response:
                location = response.headers.get("location")
                if response.status_code not in REDIRECT_STATUSES or not location:
                    return await self._result(url, current, response, redirects, limits)
            if redirects >= limits.max_redirects:
                raise TooManyRedirects(f"more than {redirects} redirects")
            current = _fetchable(_join(current, location), what="redirect target")
            if current in seen:
                raise TooManyRedirects(f"redirect loop at {current}")
            seen.add(current)
            redirects += 1

    @contextlib.asynccontextmanager
    async def _response(self, url: str, headers: Mapping[str, str] | None = None) -> AsyncIterator[httpx.Response]:
        """One streamed GET; whatever is raised while it is open is translated, and it is always closed."""
        try:
            request = self._client.build_request("GET", url, headers=dict(headers) if headers else None)
            response = await self._client.send(request, stream=True)
            try:
                yield response
            finally:
                await response.aclose()
        except FetchError:
            raise
        except Exception as exc:
            raise _translate(exc, url) from exc

    async def _result(
        self, url: str, final_url: str, response: httpx.Response, redirects: int, limits: BodyLimits
    ) -> FetchResult:
        media, charset = media_type(response.headers.get("content-type", ""))
        body = b""
        if media is None or admit(media, limits.accept, response.status_code):
            body, media = await read_body(response, media, charset, limits)
            telemetry.recorder().fetched(len(body))
        return FetchResult(
            url=url,
            final_url=final_url,
            status_code=response.status_code,
            headers={name.lower(): value for name, value in response.headers.items()},
            content_type=media,
            charset=charset,
            body=body,
            redirects=redirects,
        )


def _join(base: str, location: str) -> str:
    # As browsers read a Location: surrounding spaces, tabs and newlines dropped, backslashes as slashes.
    return urljoin(base, _LOCATION_NOISE.sub("", location.strip()).replace("\\", "/"))


def _fetchable(url: str, *, what: str) -> str:
    """The normal form of an http(s) URL, or `BlockedAddress` (other schemes, userinfo, malformed)."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme and scheme not in SCHEMES:
        raise BlockedAddress(f"{what} has scheme {scheme!r}; only http and https are fetched")
    normal = normalize(url)
    if normal is None:
        raise BlockedAddress(f"{what} is not a fetchable http(s) URL")
    return normal


def _translate(exc: Exception, url: str) -> FetchError:
    refused = AddressRefused.found_in(exc)
    if refused is not None:
        return BlockedAddress(f"refused to connect: {refused}")
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return FetchTimeout(f"timed out fetching {host_of(url)}")
    if isinstance(exc, httpx.InvalidURL):
        # httpx builds `next_request` even when not following, and fails on a hostless Location ("data:,x").
        return BlockedAddress("URL or redirect target is not a fetchable http(s) URL")
    if isinstance(exc, httpx.ProtocolError | httpx.DecodingError):
        # Oversized header blocks (h11: 100 KiB; aiohttp: 8 KiB a line, 128 lines), bad framing, truncation.
        return BadResponse(f"{host_of(url)} sent a malformed response: {str(exc)[:200] or type(exc).__name__}")
    if not isinstance(exc, httpx.HTTPError | OSError):
        log.warning("unexpected %s fetching %s", type(exc).__name__, url, exc_info=exc)
    detail = str(exc)[:200] or type(exc).__name__
    return ConnectFailed(f"fetching {host_of(url)} failed: {detail}")

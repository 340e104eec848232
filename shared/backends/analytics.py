"""Operator metrics on Cloudflare: `telemetry.Recorder` as Workers Analytics Engine data points (the `METRICS`
dataset binding). Standard library only; the one JS call goes through `jsvalues.to_js_object`."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from shared import telemetry
from shared.backends.jsvalues import is_null, to_js_object

log = logging.getLogger(__name__)

BINDING = "METRICS"
#: The index of a data point that belongs to no tenant (an unauthenticated request, say): indexes are the
#: sampling key, at most 96 bytes, one per point.
NO_TENANT = "-"
MAX_BLOB_CHARS = 256


class AnalyticsEngineRecorder:
    """One data point per event: `blobs = [kind, label, ...]`, `doubles = [count, value]`, `indexes = [tenant]`.

    | kind | blobs after kind | double1 | double2 |
    |---|---|---|---|
    | `request` | route template, method, status | 1 | seconds |
    | `page` | outcome (stored/failed/skipped), error code or "" | pages | |
    | `fetched` | | bytes | |
    | `task` | `submitted` or the final status | 1 | |
    | `webhook` | outcome (delivered/retrying/failed) | 1 | |
    | `slice` | | 1 | seconds |

    A Worker invocation may write at most 250 points, and a slice commits up to 50 pages and fetches more: page
    and byte counts are summed in the isolate and written when the slice ends (`slice_ran`), one point per
    tenant, outcome and code. Writes are fire-and-forget on Cloudflare's side; a failing one is logged, never
    raised. Query with SQL: `SUM(_sample_interval * double1)` grouped by `blob1`, `blob2`, `index1`.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._pages: Counter[tuple[str, str, str]] = Counter()
        self._bytes: Counter[str] = Counter()

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._write("request", NO_TENANT, [route, method, str(status)], [1.0, seconds])

    def page(self, tenant_id: str, outcome: str, code: str | None) -> None:
        self._pages[(tenant_id, outcome, code or "")] += 1

    def fetched(self, nbytes: int) -> None:
        if nbytes > 0:
            self._bytes[telemetry.current_tenant.get() or NO_TENANT] += nbytes

    def task_submitted(self, tenant_id: str) -> None:
        self._write("task", tenant_id, ["submitted"], [1.0])

    def task_finished(self, tenant_id: str, status: str) -> None:
        self._write("task", tenant_id, [status], [1.0])

    def webhook(self, tenant_id: str, outcome: str) -> None:
        self._write("webhook", tenant_id, [outcome], [1.0])

    def slice_ran(self, tenant_id: str, seconds: float) -> None:
        self._write("slice", tenant_id, [], [1.0, seconds])
        self.flush()

    def flush(self) -> None:
        """Write the summed page and byte counts (and forget them)."""
        pages, self._pages = self._pages, Counter()
        fetched, self._bytes = self._bytes, Counter()
        for (tenant_id, outcome, code), count in sorted(pages.items()):
            self._write("page", tenant_id, [outcome, code], [float(count)])
        for tenant_id, nbytes in sorted(fetched.items()):
            self._write("fetched", tenant_id, [], [float(nbytes)])

    def _write(self, kind: str, index: str, blobs: list[str], doubles: list[float]) -> None:
        point = {
            "blobs": [kind, *(blob[:MAX_BLOB_CHARS] for blob in blobs)],
            "doubles": doubles,
            "indexes": [index.encode()[:96].decode(errors="ignore") or NO_TENANT],
        }
        try:
            self.dataset.writeDataPoint(to_js_object(point))
        except Exception:  # metrics must never fail a request or a crawl
            log.warning("Analytics Engine write failed (%s)", kind, exc_info=True)


def install_from_env(env: Any) -> telemetry.Recorder:
    """Install an `AnalyticsEngineRecorder` over the Worker's `METRICS` binding, if it has one; the recorder
    in use afterwards."""
    dataset = getattr(env, BINDING, None)
    if not is_null(dataset) and not isinstance(telemetry.recorder(), AnalyticsEngineRecorder):
        telemetry.install(AnalyticsEngineRecorder(dataset))
    return telemetry.recorder()

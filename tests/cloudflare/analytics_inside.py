"""The Analytics Engine recorder's scenario inside Pyodide (run by analytics_harness.mjs); stdlib only."""

from __future__ import annotations

import json
import logging

from scrapeq_analytics import broken, empty, env  # type: ignore[import-not-found]  # the harness's JS objects

from shared import telemetry
from shared.backends import analytics


def run() -> str:
    """Record one of everything through `env.METRICS`, then try a Worker without the binding and a binding that
    throws; what Python saw, as JSON (the points themselves are recorded on the JS side)."""
    recorder = analytics.install_from_env(env)
    seen: dict[str, object] = {"installed": type(recorder).__name__}
    recorder.request("/tasks/{task_id}", "GET", 200, 0.0125)
    recorder.task_submitted("tn_a")
    telemetry.bind_tenant("tn_a")
    recorder.fetched(1000)
    recorder.fetched(24)
    for outcome, code in (("stored", None), ("stored", None), ("failed", "http_status"), ("skipped", None)):
        recorder.page("tn_a", outcome, code)
    recorder.page("tn_b", "failed", "timeout")
    recorder.slice_ran("tn_a", 1.5)
    recorder.task_finished("tn_a", "completed")
    recorder.webhook("tn_a", "delivered")
    recorder.webhook("t" * 120, "retrying")  # an index longer than 96 bytes is cut, not refused
    seen["again_same"] = analytics.install_from_env(env) is recorder  # built once per isolate
    telemetry.install(telemetry.NullRecorder())
    seen["without_binding"] = type(analytics.install_from_env(empty)).__name__
    logging.disable(logging.WARNING)  # the failed write's warning is expected
    try:
        analytics.AnalyticsEngineRecorder(broken.METRICS).task_submitted("tn_a")
        seen["broken_binding"] = "did not raise"
    except Exception as exc:  # the test reports what escaped
        seen["broken_binding"] = f"raised {exc!r}"
    finally:
        logging.disable(logging.NOTSET)
    return json.dumps(seen)

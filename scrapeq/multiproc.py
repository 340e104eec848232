"""The directory where every local process of one data dir keeps its metric values, so that any process's
`/metrics` adds up all of them (prometheus-client's multiprocess mode). Standard library only."""

from __future__ import annotations

import os
import re
from pathlib import Path

from shared.settings import Settings

#: prometheus-client reads it when it makes a metric's value; set before the first metric is made.
ENV = "PROMETHEUS_MULTIPROC_DIR"
#: `counter_1234.db`, `histogram_1234.db`, `gauge_livesum_1234.db`: the writing process's pid last.
_FILE = re.compile(r"^(?P<kind>[a-z_]+?)_(?P<pid>\d+)\.db$")


def metrics_dir(settings: Settings) -> Path:
    return settings.data_dir / "metrics"


def prepare(settings: Settings) -> Path:
    """Point this process's metrics at `<data dir>/metrics/`, creating it; returns it.

    When no process that wrote there is alive any more, the old files are removed first: the service starts
    again from zero, as Prometheus expects after a restart. While another process of the data dir runs, the files
    of dead processes are kept (a counter summed over processes must not go down when one worker is restarted);
    only their live gauges go, which count nothing once their process is gone.
    """
    directory = metrics_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    files = [(path, match) for path in directory.iterdir() if (match := _FILE.match(path.name))]
    alive = {pid for _, match in files if _alive(pid := int(match["pid"])) and pid != os.getpid()}
    for path, match in files:
        if not alive or (int(match["pid"]) not in alive and match["kind"].startswith("gauge_live")):
            path.unlink(missing_ok=True)
    os.environ[ENV] = str(directory)
    return directory


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True
